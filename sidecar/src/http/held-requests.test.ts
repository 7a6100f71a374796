// Requests whose action the grant holds for approval, against a real HTTPS upstream: nothing
// reaches it while a request waits; approved, exactly the held body goes once; denied, too
// large or abandoned, nothing goes. The operator's side is tested with its own routes.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { createServer as createHttpsServer, type Server } from "node:https";
import { after, before, beforeEach, describe, it } from "node:test";
import { pino } from "pino";
import { type GrantClaim, maxHeldBodyBytes } from "../../../api/credentials.ts";
import type { SessionRecord } from "../../../api/session-events.ts";
import { issueServingCertificate } from "../../../operator/src/admission/webhook-certs.ts";
import { createTestAuthority } from "../testing/credential-api-server.ts";
import { testHolds } from "../testing/held-commands.ts";
import { freePort, waitFor } from "../testing/test-helpers.ts";
import { Forwarder, type HttpTarget } from "./forwarder.ts";
import type { LoopbackServer } from "./loopback-server.ts";
import { createReverseProxy } from "./reverse-proxy.ts";

/** Sends one request and resolves with the answer (status and JSON body). */
function send(
  port: number,
  method: string,
  path: string,
  body?: Buffer,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        port,
        host: "127.0.0.1",
        method,
        path,
        headers: body ? { "content-type": "application/json" } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString() || "{}"),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("requests held for approval", () => {
  const received: { method: string; url: string; body: Buffer }[] = [];
  const records: SessionRecord[] = [];
  const { held, holds } = testHolds("kb-writer");
  let upstream: Server;
  let proxy: LoopbackServer;
  let forwarder: Forwarder;
  let port: number;
  let target: HttpTarget;
  const grant: GrantClaim = {
    connection: "kb-api",
    type: "http",
    actions: ["read", "write"],
    approval: {
      actions: ["write"],
      approvers: [{ kind: "Group", name: "security" }],
      approvals: 1,
      timeout: "10m",
    },
  };

  before(async () => {
    const authority = await createTestAuthority();
    const serving = await issueServingCertificate(authority, {
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    upstream = createHttpsServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        received.push({
          method: req.method ?? "",
          url: req.url ?? "",
          body: Buffer.concat(chunks),
        });
        res.writeHead(req.method === "GET" ? 200 : 201, { "content-type": "application/json" });
        res.end('{"ok":true}');
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const address = upstream.address() as { port: number };
    target = {
      grant,
      credential: {
        type: "http",
        url: `https://127.0.0.1:${address.port}`,
        caPem: authority.certPem,
        headers: { authorization: "Bearer upstream-secret" },
      },
    };
    forwarder = new Forwarder({
      run: "agents/kb-writer",
      record: (record) => records.push(record),
      logger: pino({ level: "silent" }),
      holds,
    });
    port = await freePort();
    proxy = createReverseProxy({
      connection: "kb-api",
      port,
      run: "agents/kb-writer",
      target: () => target,
      forwarder,
      record: (record) => records.push(record),
      logger: pino({ level: "silent" }),
    });
    await proxy.listen();
  });

  after(async () => {
    await proxy.close();
    await forwarder.close();
    upstream.close();
  });

  beforeEach(() => {
    received.length = 0;
    records.length = 0;
    held.length = 0;
  });

  it("sends an approved write once, with exactly the body that was held", async () => {
    const body = Buffer.from('{"title":"Rotating keys"}');
    const answer = send(port, "POST", "/v1/docs?draft", body);
    await waitFor("the request to be held", () => held.length === 1);
    const [hold] = held;
    assert.deepEqual(hold?.request, {
      connection: "kb-api",
      action: "write",
      http: { method: "POST", path: "/v1/docs" },
      body: { sha256: createHash("sha256").update(body).digest("hex"), bytes: body.length },
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(received.length, 0, "nothing reaches the upstream while it is held");
    hold?.decide("Approved", "approved by bob@example.com (ok)");
    assert.equal((await answer).status, 201);
    assert.equal(received.length, 1);
    assert.equal(received[0]?.url, "/v1/docs?draft");
    assert.deepEqual(received[0]?.body, body);
    assert.deepEqual(records.at(-1)?.approval, {
      command: "kb-writer-1",
      decision: "Approved",
      message: "approved by bob@example.com (ok)",
    });
    assert.equal(records.at(-1)?.kind, "request");
  });

  it("refuses a denied or expired write, and it reaches nothing", async () => {
    for (const [phase, reason] of [
      ["Denied", "ApprovalDenied"],
      ["Expired", "ApprovalExpired"],
    ] as const) {
      const answer = send(port, "DELETE", "/v1/docs/7");
      await waitFor("the request to be held", () => held.length === 1);
      held[0]?.decide(phase, "denied by bob@example.com: not today");
      const refused = await answer;
      assert.equal(refused.status, 403);
      assert.equal(refused.body.reason, reason);
      assert.match(String(refused.body.error), /^held as kb-writer-1: denied by bob/);
      assert.deepEqual(received, []);
      assert.equal(records.at(-1)?.reason, reason);
      assert.equal(records.at(-1)?.approval?.decision, phase);
      held.length = 0;
    }
  });

  it("never holds a read, and refuses a held body over the limit without asking", async () => {
    assert.equal((await send(port, "GET", "/v1/docs")).status, 200);
    const tooBig = await send(port, "POST", "/v1/docs", Buffer.alloc(maxHeldBodyBytes + 1, 97));
    assert.equal(tooBig.status, 413);
    assert.equal(tooBig.body.reason, "HeldBodyTooLarge");
    assert.deepEqual(held, []);
    assert.deepEqual(
      received.map((r) => r.method),
      ["GET"],
    );
  });

  it("stops waiting when the graph gives up on a held request", async () => {
    const req = httpRequest({ port, host: "127.0.0.1", method: "POST", path: "/v1/docs" });
    req.on("error", () => {});
    req.end("{}");
    await waitFor("the request to be held", () => held.length === 1);
    req.destroy();
    await waitFor("the wait to end", () => held[0]?.signal.aborted === true);
    held[0]?.decide("Approved", "too late");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(received.length, 0);
  });
});
