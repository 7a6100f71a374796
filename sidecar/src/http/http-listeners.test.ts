// The HTTP listeners follow the real credential client: they open once a bundle is held, serve
// with the held credential, and close within moments of the operator's revocation.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
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
import { HttpListeners } from "./http-listeners.ts";

let operator: CredentialApiServer;
let upstream: Server;
let directory: string;
const seenAuthorization: Array<string | undefined> = [];

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
  const records: SessionRecord[] = [];
  const listeners = new HttpListeners({
    ports: new Map([["kb-api", port]]),
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

    operator.revoke();
    await waitFor(
      "the listener to close",
      async () =>
        (await httpGet(`http://127.0.0.1:${port}/`).catch(
          (error: NodeJS.ErrnoException) => error.code,
        )) === "ECONNREFUSED",
      5_000,
    );
  } finally {
    await listeners.close();
    await credentials.stop();
  }
});
