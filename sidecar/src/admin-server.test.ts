// The admin endpoints over real HTTP: readiness follows the credential, metrics carry the
// sidecar's prefix, and anything else is refused with a clear status.
import assert from "node:assert/strict";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { closeAdminServer, startAdminServer } from "./admin-server.ts";
import type { Readiness } from "./credentials/credential-client.ts";
import { createSidecarMetrics } from "./metrics.ts";
import { httpGet } from "./testing/test-helpers.ts";

describe("admin server", () => {
  const metrics = createSidecarMetrics();
  let readiness: Readiness = { ready: false, reason: "no credential fetched yet" };
  let server: Server;
  let base: string;

  before(async () => {
    server = await startAdminServer({
      host: "127.0.0.1",
      port: 0,
      registry: metrics.registry,
      readiness: () => readiness,
      logger: pino({ level: "silent" }),
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => closeAdminServer(server));

  it("answers /ready 503 with a one-line JSON reason until a credential is held", async () => {
    const answer = await httpGet(`${base}/ready`);
    assert.equal(answer.status, 503);
    assert.equal(answer.contentType, "application/json");
    assert.equal(answer.body.trimEnd().includes("\n"), false);
    assert.deepEqual(JSON.parse(answer.body), {
      ready: false,
      reason: "no credential fetched yet",
    });
  });

  it("answers /ready 200 while a credential is held", async () => {
    const expiresAt = new Date(Date.now() + 60_000);
    readiness = { ready: true, expiresAt };
    const answer = await httpGet(`${base}/ready`);
    assert.equal(answer.status, 200);
    assert.deepEqual(JSON.parse(answer.body), { ready: true, expiresAt: expiresAt.toISOString() });
    readiness = { ready: false, reason: "the operator revoked the run's credential" };
    assert.equal((await httpGet(`${base}/ready`)).status, 503);
  });

  it("answers /healthz 200 whatever the credential", async () => {
    assert.equal((await httpGet(`${base}/healthz`)).status, 200);
  });

  it("serves the credential and process metrics with the lgjit_sidecar_ prefix", async () => {
    metrics.setCredential("active", new Date(Date.now() + 90_000));
    metrics.fetchFailures.inc({ reason: "Unreachable" });
    const answer = await httpGet(`${base}/metrics`);
    assert.equal(answer.status, 200);
    assert.match(answer.body, /^lgjit_sidecar_credential_state\{state="active"\} 1$/m);
    assert.match(answer.body, /^lgjit_sidecar_credential_state\{state="pending"\} 0$/m);
    assert.match(
      answer.body,
      /^lgjit_sidecar_credential_fetch_failures_total\{reason="Unreachable"\} 1$/m,
    );
    const expiry = Number(
      answer.body.match(/^lgjit_sidecar_credential_expiry_seconds (\S+)$/m)?.[1],
    );
    assert.ok(expiry > 85 && expiry <= 90, `expiry ${expiry}`);
    assert.match(answer.body, /^lgjit_sidecar_process_resident_memory_bytes \d+/m);
    const names = [...answer.body.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1] ?? "");
    assert.deepEqual(
      names.filter((name) => !name.startsWith("lgjit_sidecar_")),
      [],
    );
  });

  it("answers 404 on other paths and 405 on other methods", async () => {
    const missing = await httpGet(`${base}/secrets`);
    assert.equal(missing.status, 404);
    assert.match(JSON.parse(missing.body).error, /\/ready/);
    const { request } = await import("node:http");
    const status = await new Promise<number>((resolve, reject) => {
      request(`${base}/ready`, { method: "POST" }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      })
        .on("error", reject)
        .end();
    });
    assert.equal(status, 405);
  });
});
