// What reaches the graph of an upstream's answer: under a masking grant every body is masked or
// withheld, whatever its type and whatever the graph asked for; the connection's credential
// never comes back in a header or a body; Set-Cookie only when the Connection allows it; and
// memory stays bounded however large or compressed the body is.
import assert from "node:assert/strict";
import {
  createServer,
  get,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { after, before, beforeEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { gzipSync } from "node:zlib";
import { pino } from "pino";
import type { GrantClaim, HttpCredential } from "../../../api/credentials.ts";
import type { SessionRecord } from "../../../api/session-events.ts";
import { freePort, waitFor } from "../testing/test-helpers.ts";
import { CredentialScrubber, credentialForms } from "./credential-scrubber.ts";
import { Forwarder, type HttpTarget } from "./forwarder.ts";
import type { LoopbackServer } from "./loopback-server.ts";
import { createReverseProxy } from "./reverse-proxy.ts";

const token = "s3cr3t-t0ken/with+chars=";
const mib = 1024 * 1024;

type Respond = (req: IncomingMessage, res: ServerResponse) => void;

describe("response bodies on their way to the graph", () => {
  const records: SessionRecord[] = [];
  let respond: Respond;
  let upstream: Server;
  let proxy: LoopbackServer;
  let forwarder: Forwarder;
  let base: string;
  let target: HttpTarget;
  let credential: HttpCredential;
  const grant = (masking?: Partial<NonNullable<GrantClaim["masking"]>>): GrantClaim => ({
    connection: "kb-api",
    type: "http",
    actions: ["read"],
    http: { rules: [{ methods: ["GET"], paths: ["/**"] }] },
    ...(masking ? { masking: { unmaskable: "Deny", ...masking } } : {}),
  });

  before(async () => {
    upstream = createServer((req, res) => respond(req, res));
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const address = upstream.address();
    if (typeof address !== "object" || !address) throw new Error("no upstream address");
    credential = {
      type: "http",
      url: `http://127.0.0.1:${address.port}`,
      headers: { authorization: `Bearer ${token}` },
    };
    forwarder = new Forwarder({
      run: "agents/run-1",
      record: (record) => records.push(record),
      logger: pino({ level: "silent" }),
    });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    proxy = createReverseProxy({
      connection: "kb-api",
      port,
      run: "agents/run-1",
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
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  beforeEach(() => {
    records.length = 0;
    target = { credential, grant: grant() };
  });

  /** The upstream answers every request with this type and body. */
  function answer(type: string | string[] | undefined, body: string | Buffer): void {
    respond = (_req, res) => {
      if (type !== undefined) res.setHeader("content-type", type);
      res.end(body);
    };
  }

  async function fetchText(path: string, init?: RequestInit) {
    const response = await fetch(`${base}${path}`, init);
    const text = await response.text();
    await waitFor("the record", () => records.length === 1);
    return { status: response.status, headers: response.headers, text, record: records[0] };
  }

  describe("under a masking grant", () => {
    const detectorsOnly = { detectors: ["email" as const, "credit-card" as const] };
    const withPaths = { jsonPaths: ["$..ssn"], detectors: ["email" as const] };

    it("masks JSON sent as text/plain by its paths and detectors", async () => {
      target = { credential, grant: grant(withPaths) };
      answer("text/plain", '{"ssn": "123-45-6789", "email": "ann@example.com"}');
      const got = await fetchText("/v1/person");
      assert.equal(got.status, 200);
      assert.deepEqual(JSON.parse(got.text), {
        ssn: "[MASKED:json-path]",
        email: "[MASKED:email]",
      });
      assert.deepEqual(got.record?.masked, { "json-path": 1, email: 1 });
    });

    for (const [type, body] of [
      ["text/csv", "name,email\nann,ann@example.com\nbo,bo@example.com\n"],
      ["text/html; charset=utf-8", "<p>ann@example.com</p>\n<p>bo@example.com</p>"],
      ["application/xml", "<people><e>ann@example.com</e>\n<e>bo@example.com</e></people>"],
      ["application/x-ndjson", '{"e":"ann@example.com"}\n{"e":"bo@example.com"}\n'],
    ] as const) {
      it(`masks ${type} by the detectors`, async () => {
        target = { credential, grant: grant(detectorsOnly) };
        answer(type, body);
        const got = await fetchText("/v1/people");
        assert.equal(got.status, 200);
        assert.doesNotMatch(got.text, /@example\.com/);
        assert.equal(got.text.split("[MASKED:email]").length, 3);
        assert.equal(got.record?.kind, "masked");
        assert.deepEqual(got.record?.masked, { email: 2 });
        assert.equal(got.headers.get("content-length"), String(Buffer.byteLength(got.text)));
      });
    }

    it("masks JSON lines by the grant's paths, line by line", async () => {
      target = { credential, grant: grant(withPaths) };
      answer("application/x-ndjson", '{"ssn":"1"}\n\n{"a":{"ssn":"2"}}\n');
      const got = await fetchText("/v1/people");
      assert.equal(
        got.text,
        '{"ssn":"[MASKED:json-path]"}\n\n{"a":{"ssn":"[MASKED:json-path]"}}\n',
      );
      assert.deepEqual(got.record?.masked, { "json-path": 2 });
    });

    for (const [what, type] of [
      ["no Content-Type", undefined],
      ["two Content-Types", ["application/json", "text/html"]],
      ["a binary type", "application/octet-stream"],
      ["a charset the detectors cannot read", "text/plain; charset=utf-16le"],
    ] as const) {
      it(`withholds a body with ${what}`, async () => {
        target = { credential, grant: grant(detectorsOnly) };
        answer(type as string | string[] | undefined, "ann@example.com");
        const got = await fetchText("/v1/x");
        assert.equal(got.status, 502);
        assert.doesNotMatch(got.text, /ann@/);
        assert.equal(got.record?.reason, "Unmaskable");
      });
    }

    it("answers an empty body as it is, whatever its type", async () => {
      target = { credential, grant: grant(detectorsOnly) };
      respond = (_req, res) => res.writeHead(401, { "content-length": "0" }).end();
      const got = await fetchText("/v1/x");
      assert.equal(got.status, 401);
      assert.equal(got.record?.kind, "request");
    });

    it("withholds CSV under JSON paths, which cannot select in it, and passes it only by unmaskable: Pass", async () => {
      target = { credential, grant: grant(withPaths) };
      answer("text/csv", "ssn\n123-45-6789\n");
      const denied = await fetchText("/v1/people");
      assert.equal(denied.status, 502);
      assert.doesNotMatch(denied.text, /123-45/);
      records.length = 0;
      target = { credential, grant: grant({ ...withPaths, unmaskable: "Pass" }) };
      const passed = await fetchText("/v1/people");
      assert.equal(passed.status, 200);
      assert.equal(passed.record?.reason, "PassedUnmasked");
    });

    it("leaves the graph no Accept that chooses an unmasked form", async () => {
      target = { credential, grant: grant(detectorsOnly) };
      // A negotiating upstream: the graph picks the form.
      respond = (req, res) => {
        const accept = String(req.headers.accept ?? "");
        const [type, body] = accept.includes("csv")
          ? ["text/csv", "email\nann@example.com\n"]
          : accept.includes("octet")
            ? ["application/octet-stream", "ann@example.com"]
            : accept.includes("html")
              ? ["text/html", "<b>ann@example.com</b>"]
              : ["application/json", '{"email":"ann@example.com"}'];
        res.writeHead(200, { "content-type": type, vary: "accept" });
        res.end(body);
      };
      for (const accept of [
        "application/json",
        "text/csv",
        "text/html",
        "application/octet-stream",
      ]) {
        records.length = 0;
        const got = await fetchText("/v1/people", { headers: { accept } });
        assert.doesNotMatch(got.text, /ann@example\.com/, `Accept: ${accept}`);
      }
    });

    it("withholds, even under unmaskable: Pass, a JSON body the graph made too large to mask", async () => {
      target = {
        credential,
        grant: grant({ detectors: ["email"], unmaskable: "Pass" }),
      };
      // An upstream that reflects graph input: a 2 MiB string beside the data to mask.
      answer(
        "application/json",
        JSON.stringify({ email: "ann@example.com", note: "x".repeat(2 * mib) }),
      );
      const got = await fetchText("/v1/people");
      assert.equal(got.status, 502);
      assert.doesNotMatch(got.text, /ann@example/);
      assert.equal(got.record?.reason, "MaskingFailed");
    });

    it("withholds a text line past the limit instead of holding it", async () => {
      target = { credential, grant: grant(detectorsOnly) };
      answer("text/plain", "ann@example.com ".repeat(mib / 8));
      const got = await fetchText("/v1/people");
      assert.equal(got.status, 502);
      assert.match(got.text, /too long to mask/);
    });
  });

  describe("bounded memory", () => {
    /** Streams the answer and counts it, holding none of it; the peak RSS growth meanwhile. */
    async function drain(path: string): Promise<{ status: number; bytes: number; growth: number }> {
      const start = process.memoryUsage.rss();
      let peak = start;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage.rss());
      }, 5);
      try {
        return await new Promise((resolve, reject) => {
          get(`${base}${path}`, { agent: false }, (res) => {
            let bytes = 0;
            res.on("data", (chunk: Buffer) => {
              bytes += chunk.length;
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes, growth: 0 }));
            res.on("error", reject);
          }).on("error", reject);
        }).then((result) => ({
          ...(result as { status: number; bytes: number }),
          growth: peak - start,
        }));
      } finally {
        clearInterval(sampler);
      }
    }

    it("masks a compression bomb as it streams: 256 MiB out of 256 KiB in", async () => {
      target = { credential, grant: grant({ jsonPaths: ["$..ssn"] }) };
      const inner = 256 * mib;
      const bomb = gzipSync(Buffer.from(`{"ssn":"1","pad":"${"0".repeat(inner)}"}`), { level: 9 });
      // Garbage the collector has not reclaimed yet shows in RSS too; a held body would be twice this.
      const bound = 128 * mib;
      assert.ok(bomb.length < mib, `the bomb is ${bomb.length} bytes`);
      respond = (_req, res) => {
        res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
        res.end(bomb);
      };
      const got = await drain("/v1/bomb");
      assert.equal(got.status, 200);
      assert.ok(got.bytes > inner);
      assert.ok(got.growth < bound, `RSS grew ${Math.round(got.growth / mib)} MiB`);
      await waitFor("the record", () => records.length === 1);
      assert.deepEqual(records[0]?.masked, { "json-path": 1 });
    });

    it("streams a 256 MiB body it passes unmasked without holding it", async () => {
      target = { credential, grant: grant({ detectors: ["email"], unmaskable: "Pass" }) };
      const block = Buffer.alloc(mib, 0x61);
      respond = (_req, res) => {
        res.writeHead(200, { "content-type": "application/octet-stream" });
        let sent = 0;
        const more = () => {
          while (sent < 256) {
            sent++;
            if (!res.write(block)) return void res.once("drain", more);
          }
          res.end();
        };
        more();
      };
      const got = await drain("/v1/big");
      assert.equal(got.bytes, 256 * mib);
      // Holding it would take 256 MiB; a loaded machine's lazier collector once took 49 of 48.
      assert.ok(got.growth < 96 * mib, `RSS grew ${Math.round(got.growth / mib)} MiB`);
    });
  });

  describe("the connection's credential", () => {
    it("is overwritten wherever a JSON echo carries it back, and counted", async () => {
      respond = (req, res) => {
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ headers: req.headers }));
      };
      const got = await fetchText("/v1/echo");
      assert.equal(got.status, 200);
      assert.equal(got.text.includes(token), false);
      const echoed = JSON.parse(got.text) as { headers: { authorization: string } };
      assert.equal(echoed.headers.authorization, "*".repeat(`Bearer ${token}`.length));
      assert.equal(got.record?.kind, "masked");
      assert.ok((got.record?.masked?.credential ?? 0) >= 1);
    });

    it("never comes back in a header, an error page, or in base64 and URL-encoded forms", async () => {
      respond = (_req, res) => {
        res.writeHead(401, {
          "content-type": "text/html",
          "www-authenticate": `Bearer realm="kb", error="invalid_token", token="${token}"`,
          "x-debug-token": Buffer.from(token).toString("base64"),
          location: `/login?next=${encodeURIComponent(token)}`,
        });
        res.end(`<h1>401</h1><p>token ${token} was refused</p>`);
      };
      const got = await fetchText("/v1/secret");
      assert.equal(got.status, 401);
      const everything = `${[...got.headers].flat().join("\n")}\n${got.text}`;
      for (const form of [
        token,
        Buffer.from(token).toString("base64"),
        encodeURIComponent(token),
      ]) {
        assert.equal(everything.includes(form), false, form);
      }
      assert.equal(got.record?.masked?.credential, 4);
    });

    it("is overwritten when it is split across the upstream's writes", async () => {
      respond = async (_req, res) => {
        res.writeHead(200, { "content-type": "application/octet-stream" });
        res.write(`before ${token.slice(0, 7)}`);
        await sleep(30);
        res.end(`${token.slice(7)} after`);
      };
      const got = await fetchText("/v1/split");
      assert.equal(got.text, `before ${"*".repeat(token.length)} after`);
    });

    it("is overwritten in a body the upstream compressed anyway", async () => {
      respond = (req, res) => {
        assert.equal(req.headers["accept-encoding"], "identity");
        res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip" });
        res.end(gzipSync(`echo: ${token}`));
      };
      const got = await fetchText("/v1/gz");
      assert.equal(got.text, `echo: ${"*".repeat(token.length)}`);
      assert.equal(got.headers.get("content-encoding"), null);
    });

    it("drops Set-Cookie, counted, unless the Connection allows cookies", async () => {
      respond = (_req, res) => {
        res.setHeader("set-cookie", ["session=abc123; HttpOnly", "csrf=x"]);
        res.end("ok");
      };
      const dropped = await fetchText("/v1/login");
      assert.equal(dropped.headers.get("set-cookie"), null);
      assert.deepEqual(dropped.record?.masked, { "set-cookie": 2 });
      records.length = 0;
      target = { credential: { ...credential, allowCookies: true }, grant: grant() };
      const allowed = await fetchText("/v1/login");
      assert.match(allowed.headers.get("set-cookie") ?? "", /session=abc123/);
      assert.equal(allowed.record?.kind, "request");
    });

    it("lets a body of a connection without credential through as sent, even undecodable", async () => {
      target = {
        credential: { ...credential, headers: {} },
        grant: grant({ detectors: ["email"], unmaskable: "Pass" }),
      };
      respond = (_req, res) => {
        res.writeHead(200, { "content-type": "application/json", "content-encoding": "zstd" });
        res.end("(zstd bytes)");
      };
      // Not fetch: it would try to decode the body itself.
      const encoding = await new Promise((resolve, reject) =>
        get(`${base}/v1/z`, { agent: false }, (res) => {
          res.resume().on("end", () => resolve(res.headers["content-encoding"]));
        }).on("error", reject),
      );
      assert.equal(encoding, "zstd");
      await waitFor("the record", () => records.length === 1);
      assert.equal(records[0]?.reason, "PassedUnmasked");
    });
  });
});

describe("the credential scrubber", () => {
  const forms = credentialForms({
    type: "http",
    url: "https://kb.example",
    headers: { authorization: `Basic ${Buffer.from("agent:pa55-word-long").toString("base64")}` },
  });

  it("knows Basic's password and the pair, not the user name alone", () => {
    const texts = forms.map(String);
    assert.ok(texts.includes("pa55-word-long"));
    assert.ok(texts.includes("agent:pa55-word-long"));
    assert.ok(!texts.includes("agent"));
  });

  it("overwrites the same bytes however the body is split", () => {
    const body = Buffer.from(`a pa55-word-long b ${encodeURIComponent("agent:pa55-word-long")} c`);
    const expected = body.toString().replace(/pa55-word-long/g, "*".repeat(14));
    for (let i = 0; i < 2_000; i++) {
      const scrubber = new CredentialScrubber(forms);
      const out: Buffer[] = [];
      let at = 0;
      while (at < body.length) {
        const size = 1 + Math.floor(Math.random() * 12);
        out.push(scrubber.write(body.subarray(at, at + size)));
        at += size;
      }
      out.push(scrubber.end());
      const text = Buffer.concat(out).toString();
      assert.equal(text.length, body.length);
      assert.equal(text.includes("pa55-word-long"), false, text);
      assert.equal(text.includes(encodeURIComponent("agent:pa55-word-long")), false, text);
      assert.equal(text.startsWith("a ******"), true);
      assert.equal(
        text.replace(/\*+/g, "*"),
        expected.replace(/\*+/g, "*").replace("agent%3A*", "*"),
      );
    }
  });
});
