// The reverse proxy against a real HTTPS upstream with its own CA: what is allowed arrives with
// the connection's credential and nothing of the graph's; what is denied or malformed never
// reaches the upstream; every request is recorded.
import assert from "node:assert/strict";
import { get } from "node:http";
import { createServer as createHttpsServer, type Server } from "node:https";
import { connect } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { pino } from "pino";
import type { GrantClaim, HttpCredential } from "../../../api/credentials.ts";
import type { SessionRecord } from "../../../api/session-events.ts";
import { issueServingCertificate } from "../../../operator/src/admission/webhook-certs.ts";
import { createTestAuthority } from "../testing/credential-api-server.ts";
import { freePort, waitFor } from "../testing/test-helpers.ts";
import { Forwarder, type HttpTarget } from "./forwarder.ts";
import type { LoopbackServer } from "./loopback-server.ts";
import { createReverseProxy } from "./reverse-proxy.ts";

interface Seen {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  bodyBytes: number;
}

/** Sends raw bytes and returns everything the proxy answers before it closes. */
function rawRequest(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(bytes));
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", () => resolve(Buffer.concat(chunks).toString()));
    socket.on("error", reject);
  });
}

async function json(response: Response): Promise<Record<string, unknown>> {
  return (await response.json()) as Record<string, unknown>;
}

describe("a connection's reverse proxy", () => {
  const seen: Seen[] = [];
  const records: SessionRecord[] = [];
  let upstream: Server;
  let upstreamUrl: string;
  let caPem: string;
  let proxy: LoopbackServer;
  let forwarder: Forwarder;
  let port: number;
  let base: string;
  let target: HttpTarget | undefined;
  const grant: GrantClaim = {
    connection: "kb-api",
    type: "http",
    actions: ["read", "write"],
    http: {
      rules: [
        { methods: ["GET", "HEAD"], paths: ["/v1/docs/**"] },
        { methods: ["POST"], paths: ["/v1/upload"] },
      ],
    },
  };
  const credential = (): HttpCredential => ({
    type: "http",
    url: `${upstreamUrl}/api`,
    caPem,
    headers: { authorization: "Bearer upstream-secret", "x-api-key": "key-secret" },
  });

  before(async () => {
    const authority = await createTestAuthority();
    caPem = authority.certPem;
    const serving = await issueServingCertificate(authority, {
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    upstream = createHttpsServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
      let bodyBytes = 0;
      req.on("data", (chunk: Buffer) => {
        bodyBytes += chunk.length;
      });
      req.on("end", () => {
        seen.push({
          method: req.method ?? "",
          url: req.url ?? "",
          headers: req.headers,
          bodyBytes,
        });
        if (req.url?.startsWith("/api/v1/docs/people")) {
          const people = JSON.stringify({
            items: [
              { name: "Ann", email: "ann@example.com", note: "card 4111 1111 1111 1111" },
              { name: "Bo", email: "bo@example.com", note: "none" },
            ],
          });
          const gzip = req.url.endsWith("gz");
          res.writeHead(200, {
            "content-type": "application/json; charset=utf-8",
            etag: '"v1"',
            "x-saw-accept-encoding": String(req.headers["accept-encoding"]),
            ...(gzip
              ? { "content-encoding": "gzip" }
              : { "content-length": Buffer.byteLength(people) }),
          });
          res.end(gzip ? gzipSync(people) : people);
          return;
        }
        if (req.url?.startsWith("/api/v1/docs/not-json")) {
          res.writeHead(200, { "content-type": "application/json" });
          res.end("<html>4111 1111 1111 1111</html>");
          return;
        }
        if (req.url?.startsWith("/api/v1/docs/zstd")) {
          res.writeHead(200, { "content-type": "application/json", "content-encoding": "zstd" });
          res.end("(zstd bytes) 4111 1111 1111 1111");
          return;
        }
        if (req.url?.startsWith("/api/v1/docs/many") || req.url === "/api/v1/docs/huge") {
          const count = req.url.endsWith("huge") ? 400_000 : 40_000;
          const items = Array.from({ length: count }, (_, i) => ({
            id: i,
            email: `u${i}@example.com`,
          }));
          res.writeHead(200, { "content-type": "application/json" });
          // many-broken: the JSON breaks after more than the masked-body buffer was sent.
          const broken = req.url.endsWith("broken");
          res.end(
            broken ? `${JSON.stringify({ items }).slice(0, -2)}<html>` : JSON.stringify({ items }),
          );
          return;
        }
        if (req.url?.startsWith("/api/v1/docs/big")) {
          res.writeHead(200, {
            "content-type": "application/octet-stream",
            connection: "x-drop-me",
            "x-drop-me": "1",
          });
          res.end(Buffer.alloc(3 * 1024 * 1024, 7));
          return;
        }
        res.writeHead(200, { "content-type": "application/json", "keep-alive": "timeout=99" });
        res.end(JSON.stringify({ path: req.url, bodyBytes }));
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const address = upstream.address();
    assert.ok(address && typeof address === "object");
    upstreamUrl = `https://127.0.0.1:${address.port}`;
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const logger = pino({ level: "silent" });
    const record = (entry: SessionRecord) => records.push(entry);
    forwarder = new Forwarder({ run: "agents/kb-search", record, logger });
    proxy = createReverseProxy({
      connection: "kb-api",
      port,
      run: "agents/kb-search",
      target: () => target,
      forwarder,
      record,
      logger,
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
    target = { credential: credential(), grant };
  });

  it("forwards an allowed request with the connection's credential and none of the graph's", async () => {
    const response = await fetch(`${base}/v1/docs/7?q=a%20b`, {
      headers: {
        authorization: "Bearer graph-guess",
        "x-api-key": "graph-key",
        "x-trace": "t1",
        via: "spoofed",
      },
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("via"), "1.1 langgraph-jit");
    assert.notEqual(response.headers.get("keep-alive"), "timeout=99");
    assert.deepEqual(await json(response), { path: "/api/v1/docs/7?q=a%20b", bodyBytes: 0 });
    const [request] = seen;
    assert.equal(request?.headers.authorization, "Bearer upstream-secret");
    assert.equal(request?.headers["x-api-key"], "key-secret");
    assert.equal(request?.headers["x-trace"], "t1");
    assert.equal(request?.headers.via, "1.1 langgraph-jit");
    assert.equal(request?.headers.host, upstreamUrl.slice("https://".length));
    // What the sidecar decided, never the Host the graph sent.
    assert.equal(
      request?.headers.forwarded,
      `proto=http;host="${upstreamUrl.slice("https://".length)}"`,
    );
    const [record] = records;
    assert.equal(record?.kind, "request");
    assert.equal(record?.path, "/v1/docs/7");
    assert.deepEqual(record?.query, ["q"], "the query's names are recorded, never its values");
    assert.equal(record?.status, 200);
    assert.equal(record?.rule, "GET,HEAD /v1/docs/**");
    assert.ok(!JSON.stringify(records).includes("secret"), "a credential reached a record");
  });

  it("drops the graph's copy of a credential header however the Connection spells its name", async () => {
    target = {
      credential: { ...credential(), headers: { "X-Api-Key": "key-secret" } },
      grant,
    };
    const response = await fetch(`${base}/v1/docs/7`, { headers: { "x-api-key": "graph-key" } });
    assert.equal(response.status, 200);
    assert.equal(seen[0]?.headers["x-api-key"], "key-secret");
  });

  it("matches and forwards the normalized path, so dot-segments cannot escape a rule", async () => {
    const inside = await fetch(`${base}/v1/docs/a/../b//c`);
    assert.equal(inside.status, 200);
    assert.equal(seen[0]?.url, "/api/v1/docs/b/c");

    seen.length = 0;
    const traversal = await rawRequest(
      port,
      "GET /v1/docs/../admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.match(traversal, /^HTTP\/1.1 403/);
    const body = JSON.parse(traversal.slice(traversal.indexOf("\r\n\r\n") + 4));
    assert.deepEqual(body, {
      error: 'no rule of the grant on connection "kb-api" allows GET /v1/admin',
      run: "agents/kb-search",
      connection: "kb-api",
      rule: null,
      reason: "NoRuleMatched",
    });
    const encoded = await rawRequest(
      port,
      "GET /v1/docs/%2e%2e/%2e%2e/admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.match(encoded, /^HTTP\/1.1 403/);
    const slash = await rawRequest(
      port,
      "GET /v1/docs/..%2Fadmin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.match(slash, /^HTTP\/1.1 400/);
    assert.match(slash, /"reason":"BadPath"/);
    assert.equal(seen.length, 0, "a refused request reached the upstream");
  });

  it("refuses method and path overrides, underscore headers and bodies on reads, each with its reason", async () => {
    const cases: [RequestInit & { headers?: Record<string, string> }, string][] = [
      [{ headers: { "x-http-method-override": "DELETE" } }, "MethodOverride"],
      [{ headers: { "X-HTTP-Method": "DELETE" } }, "MethodOverride"],
      [{ headers: { "x-original-url": "/admin" } }, "PathOverride"],
      [{ headers: { "x-rewrite-url": "/admin" } }, "PathOverride"],
      [{ headers: { x_api_key: "graph-key" } }, "UnderscoreHeader"],
    ];
    for (const [init, reason] of cases) {
      const response = await fetch(`${base}/v1/docs/7`, init);
      assert.equal(response.status, 400, reason);
      assert.equal((await json(response)).reason, reason);
    }
    const getWithBody = await rawRequest(
      port,
      "GET /v1/docs/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert.match(getWithBody, /^HTTP\/1.1 400/);
    assert.match(getWithBody, /"reason":"BodyOnRead"/);
    assert.equal(seen.length, 0, "a refused request reached the upstream");
    assert.deepEqual(
      records.map((r) => [r.kind, r.status, r.reason]),
      [...cases.map(([, reason]) => ["denied", 400, reason]), ["denied", 400, "BodyOnRead"]],
    );
  });

  it("denies what the grant does not allow with the contract's 403, and the upstream sees nothing", async () => {
    const response = await fetch(`${base}/v1/docs/7`, { method: "DELETE" });
    assert.equal(response.status, 403);
    const body = await json(response);
    assert.equal(body.reason, "NoRuleMatched");
    assert.equal(body.connection, "kb-api");
    assert.equal(body.run, "agents/kb-search");
    const readOnly = { ...grant, actions: ["read" as const] };
    target = { credential: credential(), grant: readOnly };
    const upload = await fetch(`${base}/v1/upload`, { method: "POST", body: "x" });
    assert.equal(upload.status, 403);
    assert.equal((await json(upload)).reason, "ActionNotGranted");
    assert.equal(seen.length, 0);
    assert.deepEqual(
      records.map((r) => [r.kind, r.status, r.reason]),
      [
        ["denied", 403, "NoRuleMatched"],
        ["denied", 403, "ActionNotGranted"],
      ],
    );
  });

  it("fails closed without a credential: 503, nothing forwarded", async () => {
    target = undefined;
    const response = await fetch(`${base}/v1/docs/7`);
    assert.equal(response.status, 503);
    assert.equal((await json(response)).reason, "CredentialUnavailable");
    assert.equal(seen.length, 0);
  });

  it("streams large bodies both ways and counts their bytes", async () => {
    const upload = Buffer.alloc(5 * 1024 * 1024, 1);
    const response = await fetch(`${base}/v1/upload`, { method: "POST", body: upload });
    assert.equal(response.status, 200);
    assert.equal((await json(response)).bodyBytes, upload.length);
    const download = await fetch(`${base}/v1/docs/big`);
    assert.equal(
      download.headers.get("x-drop-me"),
      null,
      "a header the upstream's Connection named was kept",
    );
    assert.equal((await download.arrayBuffer()).byteLength, 3 * 1024 * 1024);
    assert.equal(records[0]?.bytesIn, upload.length);
    assert.equal(records[1]?.bytesOut, 3 * 1024 * 1024);
  });

  it("trusts only the connection's CA: an upstream it does not sign is unreachable", async () => {
    target = { credential: { ...credential(), caPem: undefined }, grant };
    const response = await fetch(`${base}/v1/docs/7`);
    assert.equal(response.status, 502);
    const body = await json(response);
    assert.equal(body.reason, "UpstreamUnavailable");
    assert.equal(seen.length, 0);
  });

  describe("with masking in the grant", () => {
    const masking = {
      jsonPaths: ["$.items[*].email"],
      detectors: ["credit-card" as const],
      unmaskable: "Deny" as const,
    };
    beforeEach(() => {
      target = { credential: credential(), grant: { ...grant, masking } };
    });

    it("masks JSON responses, corrects Content-Length and records counts but never values", async () => {
      const response = await fetch(`${base}/v1/docs/people`, { headers: { range: "bytes=0-10" } });
      assert.equal(response.status, 200);
      const text = await response.text();
      assert.equal(response.headers.get("content-length"), String(Buffer.byteLength(text)));
      assert.equal(response.headers.get("etag"), null, "the upstream's ETag describes other bytes");
      assert.equal(response.headers.get("x-saw-accept-encoding"), "identity");
      assert.equal(seen[0]?.headers.range, undefined, "a range of a masked body was asked for");
      assert.deepEqual(JSON.parse(text), {
        items: [
          { name: "Ann", email: "[MASKED:json-path]", note: "card [MASKED:credit-card]" },
          { name: "Bo", email: "[MASKED:json-path]", note: "none" },
        ],
      });
      const [entry] = records;
      assert.equal(entry?.kind, "masked");
      assert.deepEqual(entry?.masked, { "json-path": 2, "credit-card": 1 });
      assert.ok(!JSON.stringify(records).includes("example.com"));
      assert.ok(!JSON.stringify(records).includes("4111"));
    });

    it("decodes a body the upstream compressed anyway, then masks it", async () => {
      const response = await fetch(`${base}/v1/docs/people-gz`);
      const body = (await response.json()) as { items: Array<{ email: string }> };
      assert.equal(response.headers.get("content-encoding"), null);
      assert.equal(body.items[0]?.email, "[MASKED:json-path]");
    });

    it("withholds a body that claims JSON but is not: 502, recorded, nothing of it passed", async () => {
      const response = await fetch(`${base}/v1/docs/not-json`);
      assert.equal(response.status, 502);
      const text = await response.text();
      assert.ok(!text.includes("4111"));
      assert.equal(JSON.parse(text).reason, "MaskingFailed");
      assert.equal(records[0]?.kind, "error");
      assert.equal(records[0]?.reason, "MaskingFailed");
    });

    it("withholds a body in an encoding it cannot decode", async () => {
      const response = await fetch(`${base}/v1/docs/zstd`);
      assert.equal(response.status, 502);
      assert.equal(JSON.parse(await response.text()).reason, "UnsupportedEncoding");
      assert.equal(records[0]?.reason, "UnsupportedEncoding");
    });

    it("streams a masked body larger than its buffer, chunked", async () => {
      const response = await fetch(`${base}/v1/docs/many`);
      assert.equal(response.headers.get("content-length"), null);
      const body = (await response.json()) as { items: Array<{ id: number; email: string }> };
      assert.equal(body.items.length, 40_000);
      assert.ok(body.items.every((item) => item.email === "[MASKED:json-path]"));
      assert.deepEqual(records[0]?.masked, { "json-path": 40_000 });
    });

    it("records a masked answer the graph walks away from while it is held back", async () => {
      await new Promise<void>((resolve) => {
        const req = get(`${base}/v1/docs/huge`, (res) => {
          // Read one chunk, then stop reading until the sidecar waits on a full socket.
          res.once("data", () => {
            res.pause();
            setTimeout(() => {
              req.destroy();
              resolve();
            }, 300);
          });
        });
        req.on("error", () => undefined);
      });
      await waitFor("the record", () => records.length === 1, 5_000);
      assert.equal(records[0]?.kind, "error");
      assert.equal(records[0]?.reason, "GraphDisconnected");
    });

    describe("and unmaskable: Pass", () => {
      beforeEach(() => {
        target = {
          credential: credential(),
          grant: { ...grant, masking: { ...masking, unmaskable: "Pass" as const } },
        };
      });

      it("still masks what it can", async () => {
        const body = (await (await fetch(`${base}/v1/docs/people`)).json()) as {
          items: Array<{ email: string }>;
        };
        assert.equal(body.items[0]?.email, "[MASKED:json-path]");
        assert.equal(records[0]?.kind, "masked");
      });

      it("withholds a body that breaks as JSON all the same: the graph may have provoked the break", async () => {
        const response = await fetch(`${base}/v1/docs/not-json`);
        assert.equal(response.status, 502);
        assert.doesNotMatch(await response.text(), /4111/);
        assert.equal(records[0]?.kind, "error");
        assert.equal(records[0]?.reason, "MaskingFailed");
      });

      it("withholds a body it cannot decode when it might carry the credential back", async () => {
        const response = await fetch(`${base}/v1/docs/zstd`);
        assert.equal(response.status, 502);
        assert.match(await response.text(), /credential/);
        assert.equal(records[0]?.reason, "UnsupportedEncoding");
      });

      it("cuts a body that breaks after masked bytes were sent: nothing unmasked follows them", async () => {
        const response = await fetch(`${base}/v1/docs/many-broken`);
        assert.equal(response.status, 200);
        await assert.rejects(response.text());
        await waitFor("the record", () => records.length === 1);
        assert.equal(records[0]?.kind, "error");
        assert.equal(records[0]?.reason, "MaskingFailed");
      });
    });
  });

  it("answers smuggling and malformed requests with a 4xx, records them, forwards nothing", async () => {
    const cases: Array<[string, RegExp]> = [
      [
        "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        /^HTTP\/1.1 400/,
      ],
      [
        "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        /^HTTP\/1.1 400/,
      ],
      ["GET /v1/docs/1 HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", /^HTTP\/1.1 400/],
      [
        `GET /v1/docs/1 HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
        /^HTTP\/1.1 431/,
      ],
      [
        "GET http://evil.example/v1/docs/1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        /^HTTP\/1.1 400[\s\S]*BadRequestTarget/,
      ],
      [
        "GET /v1/docs/1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        /^HTTP\/1.1 501/,
      ],
      ["CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", /^HTTP\/1.1 405/],
    ];
    for (const [request, expected] of cases) {
      assert.match(await rawRequest(port, request), expected, request.slice(0, 60));
    }
    assert.equal(seen.length, 0, "a malformed request reached the upstream");
    assert.equal(records.length, cases.length);
    assert.ok(records.every((record) => record.kind === "denied"));
  });
});
