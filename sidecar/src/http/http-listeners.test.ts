// The HTTP listeners follow the real credential client: they open once a bundle is held, serve
// with the held credential, and close within moments of the operator's revocation.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { pino } from "pino";
import type { SessionRecord } from "../../../api/session-events.ts";
import { issueServingCertificate } from "../../../operator/src/admission/webhook-certs.ts";
import { CredentialClient } from "../credentials/credential-client.ts";
import { createSidecarMetrics } from "../metrics.ts";
import {
  CredentialApiServer,
  createTestAuthority,
  testIdentity,
} from "../testing/credential-api-server.ts";
import { freePort, httpGet, waitFor } from "../testing/test-helpers.ts";
import { createPodCa } from "../tls/pod-ca.ts";
import { HttpListeners } from "./http-listeners.ts";

let operator: CredentialApiServer;
let upstream: Server;
let directory: string;
const seenAuthorization: Array<string | undefined> = [];
let upstreamPort: number;

before(async () => {
  operator = await CredentialApiServer.create();
  await operator.listen();
  const authority = await createTestAuthority();
  const serving = await issueServingCertificate(authority, {
    dnsNames: [],
    ipAddresses: ["127.0.0.1"],
    validityDays: 1,
  });
  upstream = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    seenAuthorization.push(req.headers.authorization);
    res.end("answer");
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const address = upstream.address();
  assert.ok(address && typeof address === "object");
  upstreamPort = address.port;
  operator.kbApi = {
    type: "http",
    url: `https://127.0.0.1:${address.port}`,
    caPem: authority.certPem,
    headers: { authorization: "Bearer upstream-secret" },
  };
  directory = await mkdtemp(join(tmpdir(), "lgjit-listeners-"));
  await writeFile(join(directory, "token"), "pod-token\n");
});

after(async () => {
  await operator.close();
  upstream.closeAllConnections();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
  await rm(directory, { recursive: true, force: true });
});

/** Sends raw bytes to a port; resolves with the first chunk of the answer and the socket. */
function rawExchange(port: number, bytes: string): Promise<{ first: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(bytes));
    socket.once("data", (chunk: Buffer) => resolve({ first: chunk.toString(), socket }));
    socket.once("error", reject);
  });
}

it("listens with the held credential, and closes within moments of revocation", async () => {
  const logger = pino({ level: "silent" });
  const credentials = new CredentialClient({
    operatorUrl: operator.url,
    operatorCa: operator.caPem,
    tokenFile: join(directory, "token"),
    identity: testIdentity,
    logger,
    metrics: createSidecarMetrics(),
  });
  const port = await freePort();
  const proxyPort = await freePort();
  const records: SessionRecord[] = [];
  const ca = createPodCa({ name: "kb-refresh" });
  const listeners = new HttpListeners({
    ca,
    ports: new Map([["kb-api", port]]),
    proxyPort,
    run: "agents/kb-refresh",
    credentials,
    record: (record) => records.push(record),
    logger,
  });
  try {
    assert.deepEqual(listeners.notListening(), [], "nothing is wanted before a credential is held");
    credentials.start();
    await waitFor(
      "the kb-api listener",
      () => credentials.state === "active" && listeners.notListening().length === 0,
    );
    const answer = await httpGet(`http://127.0.0.1:${port}/v1/docs/1`);
    assert.deepEqual([answer.status, answer.body], [200, "answer"]);
    assert.deepEqual(seenAuthorization, ["Bearer upstream-secret"]);
    assert.equal(records[0]?.kind, "request");

    // The forward proxy: plain HTTP to the granted host is enforced like the connection's port.
    const viaProxy = await rawExchange(
      proxyPort,
      `GET http://127.0.0.1:${upstreamPort}/v1/docs/2 HTTP/1.1\r\nHost: 127.0.0.1:${upstreamPort}\r\nConnection: close\r\n\r\n`,
    );
    viaProxy.socket.destroy();
    assert.match(viaProxy.first, /^HTTP\/1.1 200/);
    assert.equal(seenAuthorization.at(-1), "Bearer upstream-secret");
    const elsewhere = await rawExchange(
      proxyPort,
      "GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\nConnection: close\r\n\r\n",
    );
    elsewhere.socket.destroy();
    assert.match(elsewhere.first, /^HTTP\/1.1 403[\s\S]*"reason":"HostNotGranted"/);
    const refusedTunnel = await rawExchange(
      proxyPort,
      "CONNECT example.invalid:443 HTTP/1.1\r\nHost: example.invalid:443\r\n\r\n",
    );
    refusedTunnel.socket.destroy();
    assert.match(refusedTunnel.first, /^HTTP\/1.1 403/);

    // CONNECT to the granted host and port: intercepted with the pod CA's certificate, and each
    // request inside enforced and credentialed like on the connection's port.
    const tunnel = await rawExchange(
      proxyPort,
      `CONNECT 127.0.0.1:${upstreamPort} HTTP/1.1\r\nHost: 127.0.0.1:${upstreamPort}\r\n\r\n`,
    );
    assert.match(tunnel.first, /^HTTP\/1.1 200 Connection Established/);
    const secure = tlsConnect({
      socket: tunnel.socket,
      ca: ca.certificatePem,
      servername: "127.0.0.1",
    });
    secure.write(
      "GET /v1/docs/3 HTTP/1.1\r\nHost: x\r\n\r\nDELETE /v1/docs/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    const answered = await new Promise<string>((resolve) => {
      let text = "";
      secure.on("data", (chunk: Buffer) => {
        text += chunk;
      });
      secure.on("close", () => resolve(text));
    });
    assert.equal(secure.authorized, true);
    assert.match(answered, /^HTTP\/1.1 200[\s\S]*answer[\s\S]*HTTP\/1.1 403/);
    assert.equal(seenAuthorization.at(-1), "Bearer upstream-secret");
    await waitFor(
      "the tunnel's records",
      () => records.filter((r) => r.path === "/v1/docs/3").length === 2,
    );
    // Pipelined: the refusal is recorded before the forwarded GET is over.
    const inside = records
      .filter((r) => r.path === "/v1/docs/3")
      .sort((a, b) => (a.method ?? "").localeCompare(b.method ?? ""));
    assert.deepEqual(
      inside.map((r) => [r.kind, r.method, r.status, r.connection]),
      [
        ["denied", "DELETE", 403, "kb-api"],
        ["request", "GET", 200, "kb-api"],
      ],
    );
    assert.equal(
      records.some((r) => r.kind === "tunnel"),
      false,
      "no blind tunnel is left",
    );

    operator.revoke();
    const refused = async (at: number) =>
      (await httpGet(`http://127.0.0.1:${at}/`).catch(
        (error: NodeJS.ErrnoException) => error.code,
      )) === "ECONNREFUSED";
    await waitFor(
      "both listeners to close",
      async () => (await refused(port)) && (await refused(proxyPort)),
      5_000,
    );
  } finally {
    await listeners.close();
    await credentials.stop();
  }
});
