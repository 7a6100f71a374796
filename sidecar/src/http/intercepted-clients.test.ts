// Real HTTP clients calling a granted connection's real https:// URL the way their libraries
// normally do, through HTTPS_PROXY: curl, Python requests, Node's fetch with
// NODE_USE_ENV_PROXY, and LangChain's AsyncCaller. Each trusts the pod CA through the variables
// the Job builder sets, and each gets the full path: the credential added, the rules applied,
// the answer masked, every request recorded.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { promisify } from "node:util";
import { pino } from "pino";
import type { GrantClaim, HttpCredential } from "../../../api/credentials.ts";
import type { SessionRecord } from "../../../api/session-events.ts";
import { issueServingCertificate } from "../../../operator/src/admission/webhook-certs.ts";
import { createTestAuthority } from "../testing/credential-api-server.ts";
import { freePort } from "../testing/test-helpers.ts";
import { createPodCa } from "../tls/pod-ca.ts";
import { trustFileNames, writeTrustFiles } from "../tls/trust-files.ts";
import { createForwardProxy } from "./forward-proxy.ts";
import { Forwarder } from "./forwarder.ts";
import type { LoopbackServer } from "./loopback-server.ts";

const run = promisify(execFile);
const repository = new URL("../../../", import.meta.url).pathname;
const graphPackage = join(repository, "examples/graph");

/** Each client prints the status, a newline, then the body. */
const clients: Record<string, (url: string, method: string) => [string, string[], string?]> = {
  curl: (url, method) => ["curl", ["-sS", "-X", method, "-w", "\n%{http_code}", url]],
  // Debian's interpreter, which has Debian's python3-requests (.ci/run installs it).
  "Python requests": (url, method) => [
    "/usr/bin/python3",
    [
      "-c",
      "import requests, sys; r = requests.request(sys.argv[2], sys.argv[1]); print(r.text); print(r.status_code)",
      url,
      method,
    ],
  ],
  "Node fetch": (url, method) => [
    process.execPath,
    [
      "--input-type=module",
      "-e",
      "const r = await fetch(process.argv[1], { method: process.argv[2] }); console.log(await r.text()); console.log(r.status);",
      url,
      method,
    ],
  ],
  "LangChain's AsyncCaller": (url, method) => [
    process.execPath,
    [
      "--input-type=module",
      "-e",
      [
        'import { AsyncCaller } from "@langchain/core/utils/async_caller";',
        "const caller = new AsyncCaller({ maxRetries: 0 });",
        // It rejects a non-2xx answer with an Error that keeps nothing of it: printed as -1.
        "const r = await caller.fetch(process.argv[1], { method: process.argv[2] }).catch(() => undefined);",
        "console.log(r ? await r.text() : ''); console.log(r ? r.status : -1);",
      ].join(" "),
      url,
      method,
    ],
    graphPackage,
  ],
};

describe("real clients through HTTPS_PROXY", () => {
  const records: SessionRecord[] = [];
  const seen: Array<{ method: string; url: string; authorization: string | undefined }> = [];
  let upstream: Server;
  let proxy: LoopbackServer;
  let forwarder: Forwarder;
  let trustDir: string;
  let env: NodeJS.ProcessEnv;
  let origin: string;

  before(async () => {
    const authority = await createTestAuthority();
    const serving = await issueServingCertificate(authority, {
      dnsNames: [],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    upstream = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        authorization: req.headers.authorization,
      });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ name: "Ann", email: "ann@example.com" }));
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const address = upstream.address();
    if (typeof address !== "object" || !address) throw new Error("no upstream address");
    origin = `https://127.0.0.1:${address.port}`;
    const credential: HttpCredential = {
      type: "http",
      url: `${origin}/api`,
      caPem: authority.certPem,
      headers: { authorization: "Bearer upstream-secret-token" },
    };
    const grant: GrantClaim = {
      connection: "kb-api",
      type: "http",
      actions: ["read"],
      http: { rules: [{ methods: ["GET"], paths: ["/v1/**"] }] },
      masking: { detectors: ["email"], unmaskable: "Deny" },
    };
    forwarder = new Forwarder({
      run: "agents/run-1",
      record: (record) => records.push(record),
      logger: pino({ level: "silent" }),
    });
    const ca = createPodCa({ name: "run-1" });
    trustDir = await mkdtemp(join(tmpdir(), "lgjit-trust-"));
    writeTrustFiles(trustDir, ca);
    const port = await freePort();
    proxy = createForwardProxy({
      port,
      run: "agents/run-1",
      targets: () => new Map([["kb-api", { credential, grant }]]),
      credentialHeld: () => true,
      forwarder,
      ca,
      record: (record) => records.push(record),
      logger: pino({ level: "silent" }),
    });
    await proxy.listen();
    const proxyUrl = `http://127.0.0.1:${port}`;
    const bundle = join(trustDir, trustFileNames.bundle);
    // What the Job builder gives a graph container (job-builder.ts), and nothing that bypasses.
    const { NO_PROXY: _, no_proxy: __, ...inherited } = process.env;
    env = {
      ...inherited,
      HTTPS_PROXY: proxyUrl,
      https_proxy: proxyUrl,
      SSL_CERT_FILE: bundle,
      REQUESTS_CA_BUNDLE: bundle,
      CURL_CA_BUNDLE: bundle,
      NODE_EXTRA_CA_CERTS: join(trustDir, trustFileNames.ca),
      NODE_USE_ENV_PROXY: "1",
    };
  });

  after(async () => {
    await proxy.close();
    await forwarder.close();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
    await rm(trustDir, { recursive: true, force: true });
  });

  beforeEach(() => {
    records.length = 0;
    seen.length = 0;
  });

  async function call(client: string, url: string, method: string) {
    const [command, args, cwd] = clients[client]?.(url, method) ?? [""];
    const { stdout } = await run(command, args ?? [], { env, cwd: cwd ?? repository });
    const lines = stdout.trimEnd().split("\n");
    return { status: Number(lines.at(-1)), body: lines.slice(0, -1).join("\n") };
  }

  for (const client of Object.keys(clients)) {
    it(`${client}: a GET is credentialed, masked and recorded; a DELETE is refused`, async () => {
      const read = await call(client, `${origin}/api/v1/people`, "GET");
      assert.equal(read.status, 200, read.body);
      assert.deepEqual(JSON.parse(read.body), { name: "Ann", email: "[MASKED:email]" });
      assert.deepEqual(seen, [
        { method: "GET", url: "/api/v1/people", authorization: "Bearer upstream-secret-token" },
      ]);
      assert.equal(records[0]?.kind, "masked");
      assert.equal(records[0]?.path, "/v1/people");

      const write = await call(client, `${origin}/api/v1/people`, "DELETE");
      if (client === "LangChain's AsyncCaller") assert.equal(write.status, -1);
      else {
        assert.equal(write.status, 403, write.body);
        assert.match(write.body, /"reason":"(ActionNotGranted|NoRuleMatched)"/);
      }
      assert.equal(seen.length, 1, "the DELETE reached the upstream");
      assert.equal(records[1]?.kind, "denied");
    });
  }

  it("refuses a CONNECT anywhere else, and records a graph that does not trust the pod CA", async () => {
    const elsewhere = await call("curl", "https://127.0.0.2:1/", "GET").catch(
      (failed: { stdout: string }) => ({ status: 0, body: failed.stdout }),
    );
    assert.notEqual(elsewhere.status, 200);
    assert.equal(records[0]?.reason, "HostNotGranted");
    records.length = 0;
    const untrusting = { ...env, CURL_CA_BUNDLE: "/etc/ssl/certs/ca-certificates.crt" };
    await run("curl", ["-sS", `${origin}/api/v1/people`], { env: untrusting }).catch(() => {});
    assert.equal(seen.length, 0);
    assert.equal(records[0]?.reason, "TlsHandshakeFailed");
  });
});
