// The sidecar as a careful proxy: Expect: 100-continue answered only for what it forwards,
// informational answers not costing the final one, stalled bodies and surplus connections
// given up, and every refusal recorded (Host-less requests and method-override queries too).
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, request, type Server } from "node:http";
import { connect, type Socket } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { pino } from "pino";
import type { GrantClaim, HttpCredential } from "../../../api/credentials.ts";
import type { SessionRecord } from "../../../api/session-events.ts";
import { freePort, waitFor } from "../testing/test-helpers.ts";
import { Forwarder } from "./forwarder.ts";
import { LoopbackServer } from "./loopback-server.ts";
import { createReverseProxy } from "./reverse-proxy.ts";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
  aborted: boolean;
}

/** Sends raw bytes and returns everything answered until the socket closes or waitMs passes. */
function rawExchange(port: number, bytes: string, waitMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(bytes));
    const chunks: Buffer[] = [];
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString());
    };
    const timer = setTimeout(done, waitMs);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", done);
    socket.on("error", reject);
  });
}

describe("the sidecar as a careful proxy", () => {
  const seen: Seen[] = [];
  const records: SessionRecord[] = [];
  let upstream: Server;
  let proxy: LoopbackServer;
  let forwarder: Forwarder;
  let port: number;
  const grant: GrantClaim = {
    connection: "kb-api",
    type: "http",
    actions: ["read", "write"],
    http: {
      rules: [
        { methods: ["GET"], paths: ["/v1/**"] },
        { methods: ["POST"], paths: ["/v1/upload"] },
      ],
    },
  };
  let credential: HttpCredential;

  before(async () => {
    upstream = createServer((req, res) => {
      const entry: Seen = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: "",
        aborted: false,
      };
      seen.push(entry);
      req.on("data", (chunk: Buffer) => {
        entry.body += chunk.toString();
      });
      req.on("aborted", () => {
        entry.aborted = true;
      });
      req.on("end", () => {
        if (req.url === "/v1/hints") {
          res.writeEarlyHints({ link: "</style.css>; rel=preload; as=style" });
          res.writeProcessing();
        }
        res.writeHead(200, { "content-type": "text/plain" });
        res.end(`got ${entry.body.length} bytes`);
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const address = upstream.address();
    if (typeof address !== "object" || !address) throw new Error("no upstream address");
    credential = {
      type: "http",
      url: `http://127.0.0.1:${address.port}`,
      headers: { authorization: "Bearer upstream-secret" },
    };
    forwarder = new Forwarder({
      run: "agents/run-1",
      record: (record) => records.push(record),
      requestBodyIdleMs: 300,
      logger: pino({ level: "silent" }),
    });
    port = await freePort();
    proxy = createReverseProxy({
      connection: "kb-api",
      port,
      run: "agents/run-1",
      target: () => ({ credential, grant }),
      forwarder,
      record: (record) => records.push(record),
      logger: pino({ level: "silent" }),
    });
    await proxy.listen();
  });

  after(async () => {
    await proxy.close();
    await forwarder.close();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  beforeEach(() => {
    seen.length = 0;
    records.length = 0;
  });

  /** POSTs body with Expect: 100-continue, sending it only after a 100 (as curl does). */
  function postExpecting(path: string, body: string) {
    return new Promise<{ status: number; continued: boolean; text: string }>((resolve, reject) => {
      let continued = false;
      const req = request({
        port,
        host: "127.0.0.1",
        method: "POST",
        path,
        agent: false,
        headers: { expect: "100-continue", "content-length": Buffer.byteLength(body) },
      });
      req.on("continue", () => {
        continued = true;
        req.end(body);
      });
      req.on("response", (res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => {
          text += chunk.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, continued, text }));
      });
      req.on("error", reject);
      req.flushHeaders();
    });
  }

  it("answers 100 to an allowed request with Expect and forwards its body without Expect", async () => {
    const answer = await postExpecting("/v1/upload", "x".repeat(5000));
    assert.equal(answer.continued, true);
    assert.equal(answer.status, 200);
    assert.equal(answer.text, "got 5000 bytes");
    assert.equal(seen[0]?.headers.expect, undefined);
    assert.equal(seen[0]?.body.length, 5000);
  });

  it("refuses a denied request with Expect before its body is sent", async () => {
    const answer = await postExpecting("/v1/other", "x".repeat(5000));
    assert.equal(answer.continued, false);
    assert.equal(answer.status, 403);
    assert.equal(seen.length, 0);
    assert.equal(records[0]?.reason, "NoRuleMatched");
  });

  it("answers an expectation other than 100-continue with a recorded 417", async () => {
    const answer = await rawExchange(
      port,
      "POST /v1/upload HTTP/1.1\r\nhost: x\r\nexpect: 200-ok\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 417 /);
    assert.match(answer, /"reason":"ExpectationFailed"/);
    assert.equal(seen.length, 0);
    assert.equal(records[0]?.reason, "ExpectationFailed");
  });

  it("passes Early Hints on and still delivers the final answer after 1xx responses", async () => {
    const informational: number[] = [];
    const final = await new Promise<{ status: number; text: string; link: unknown }>(
      (resolve, reject) => {
        let link: unknown;
        const req = request({ port, host: "127.0.0.1", path: "/v1/hints", agent: false });
        req.on("information", (info) => {
          informational.push(info.statusCode);
          link = info.headers.link;
        });
        req.on("response", (res) => {
          let text = "";
          res.on("data", (chunk: Buffer) => {
            text += chunk.toString();
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text, link }));
        });
        req.on("error", reject);
        req.end();
      },
    );
    assert.deepEqual(informational, [103]);
    assert.equal(final.link, "</style.css>; rel=preload; as=style");
    assert.equal(final.status, 200);
    assert.equal(final.text, "got 0 bytes");
    assert.equal(records[0]?.status, 200);
  });

  it("gives up a request whose body stalls, with a recorded 408, and frees the upstream", async () => {
    const answer = await rawExchange(
      port,
      "POST /v1/upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly ten b",
    );
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.match(answer, /"reason":"RequestBodyTimeout"/);
    assert.equal(records[0]?.kind, "error");
    assert.equal(records[0]?.reason, "RequestBodyTimeout");
    await waitFor("the upstream to see the request aborted", () => seen[0]?.aborted === true);
  });

  it("refuses an HTTP/1.1 request without Host with a recorded 400, and takes HTTP/1.0 without", async () => {
    const missing = await rawExchange(port, "GET /v1/docs HTTP/1.1\r\nconnection: close\r\n\r\n");
    assert.match(missing, /^HTTP\/1\.1 400 /);
    assert.match(missing, /"reason":"MissingHost"/);
    assert.equal(records[0]?.reason, "MissingHost");
    assert.equal(seen.length, 0);
    const old = await rawExchange(port, "GET /v1/docs HTTP/1.0\r\n\r\n");
    assert.match(old, /^HTTP\/1\.1 200 /);
    assert.equal(seen.length, 1);
  });

  it("survives a graph that resets a refused CONNECT's socket", async () => {
    for (let i = 0; i < 20; i++) {
      const socket = connect(port, "127.0.0.1", () => {
        socket.write("CONNECT example.invalid:443 HTTP/1.1\r\nhost: example.invalid:443\r\n\r\n");
        setImmediate(() => socket.resetAndDestroy());
      });
      socket.on("error", () => {});
      await new Promise((resolve) => socket.once("close", resolve));
    }
    const answer = await rawExchange(
      port,
      "GET /v1/docs HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 200 /);
  });

  it("refuses a method-override query parameter with a recorded 400", async () => {
    const answer = await rawExchange(
      port,
      "GET /v1/docs?page=2&_method=DELETE HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /"reason":"MethodOverride"/);
    assert.deepEqual(records[0]?.query, ["page", "_method"]);
    assert.equal(seen.length, 0);
  });
});

describe("a listener's connection cap", () => {
  it("answers a connection past the cap with a recorded 503 and serves the others", async () => {
    const records: SessionRecord[] = [];
    const port = await freePort();
    const server = new LoopbackServer({
      port,
      run: "agents/run-1",
      connection: "kb-api",
      maxConnections: 2,
      record: (record) => records.push(record),
      onRequest: (_req, res) => res.end("ok"),
    });
    await server.listen();
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const socket = connect(port, "127.0.0.1");
        await new Promise((resolve) => socket.once("connect", resolve));
        held.push(socket);
      }
      await waitFor("both connections accepted", () => records.length === 0);
      const refused = await rawExchange(port, "GET / HTTP/1.1\r\nhost: x\r\n\r\n");
      assert.match(refused, /^HTTP\/1\.1 503 /);
      assert.match(refused, /"reason":"TooManyConnections"/);
      assert.equal(records[0]?.reason, "TooManyConnections");
      held[0]?.write("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
      const served = await new Promise<string>((resolve) =>
        held[0]?.once("data", (chunk: Buffer) => resolve(chunk.toString())),
      );
      assert.match(served, /^HTTP\/1\.1 200 /);
    } finally {
      for (const socket of held) socket.destroy();
      await server.close();
    }
  });
});
