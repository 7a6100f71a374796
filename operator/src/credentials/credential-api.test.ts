// The run-token status route is how a sidecar learns, within seconds, that its run ended: it
// answers from the cache, wakes long polls on the run's change, and refuses what no longer holds.
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { describe, it } from "node:test";
import pino from "pino";
import { credentialApi, maxStatusWaitSeconds } from "../../../api/credentials.ts";
import type { LangGraphRun, LangGraphRunStatus } from "../../../api/v1alpha1.ts";
import { StatusSeal } from "../runs/status-seal.ts";
import { HttpError, type Route } from "../server/https-server.ts";
import { createMetrics } from "../server/metrics.ts";
import { FakeCluster } from "../testing/fake-cluster.ts";
import { alice, testRun } from "../testing/runs.ts";
import { credentialRoutes } from "./credential-api.ts";
import type { CredentialIssuer } from "./credential-issuer.ts";
import type { VerifiedRunToken } from "./run-token.ts";

const seal = new StatusSeal(Buffer.alloc(32, 5));
const deadline = new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d+Z$/, "Z");

function sealed(run: LangGraphRun, status: LangGraphRunStatus): LangGraphRun {
  return { ...run, status: { ...status, seal: seal.ofStatus(run.metadata?.uid ?? "", status) } };
}

function setup(options: { expSeconds?: number } = {}) {
  const cluster = new FakeCluster();
  const run = cluster.runs.put(
    sealed(testRun({ requester: alice }), {
      phase: "Running",
      startedAt: "2026-12-05T10:00:00Z",
      deadline,
    }),
  );
  const token: VerifiedRunToken = {
    sub: run.metadata?.uid ?? "",
    jti: "j-1",
    exp: options.expSeconds ?? Math.floor(Date.now() / 1000) + 600,
    run: { namespace: "agents", name: "r", uid: run.metadata?.uid ?? "", deadline },
    pod: { name: "r-abcde", uid: "pod-1" },
    grants: [],
  };
  const routes = credentialRoutes({
    issuer: {} as CredentialIssuer,
    jwks: () => ({ keys: [] }),
    verify: async (raw) => {
      if (raw !== "good") throw new HttpError(401, "TokenInvalid", "bad signature");
      return token;
    },
    runs: cluster.runs,
    seal,
    logger: pino({ level: "silent" }),
    metrics: createMetrics(),
  });
  const status = routes[credentialApi.status] as Route;
  const ask = (waitSeconds: string | number, signal = new AbortController().signal) =>
    status.handle(
      { headers: { authorization: "Bearer good" } } as IncomingMessage,
      new URL(`https://operator${credentialApi.status}?waitSeconds=${waitSeconds}`),
      signal,
    );
  return { cluster, run, ask };
}

async function refusal(call: Promise<unknown>): Promise<string> {
  const error = (await call.then(
    () => assert.fail("the status route answered 200"),
    (e: unknown) => e,
  )) as HttpError;
  return `${error.status} ${error.reason}`;
}

describe("credential API: run token status", () => {
  it("says a running run's token is active, with its deadline", async () => {
    const { ask } = setup();
    assert.deepEqual(await ask(0), { status: 200, body: { state: "active", deadline } });
  });

  it("refuses at once when the run was revoked, deleted or replaced under its name", async () => {
    const revoked = setup();
    revoked.cluster.runs.put({
      ...revoked.run,
      status: { ...revoked.run.status, credential: { revokedAt: "2026-12-05T10:05:00Z" } },
    });
    assert.equal(await refusal(revoked.ask(0)), "401 Revoked");

    const deleted = setup();
    deleted.cluster.runs.remove(deleted.run);
    assert.equal(await refusal(deleted.ask(0)), "401 Revoked");

    const replaced = setup();
    replaced.cluster.runs.put({
      ...replaced.run,
      metadata: { ...replaced.run.metadata, uid: "another-run" },
    });
    assert.equal(await refusal(replaced.ask(0)), "401 Revoked");
  });

  it("wakes a long poll as soon as the run's change revokes it", async () => {
    const { cluster, run, ask } = setup();
    const started = performance.now();
    const answer = refusal(ask(maxStatusWaitSeconds));
    setImmediate(() =>
      cluster.runs.put({
        ...run,
        status: {
          ...run.status,
          phase: "Succeeded",
          credential: { revokedAt: "2026-12-05T10:05:00Z" },
        },
      }),
    );
    assert.equal(await answer, "401 Revoked");
    assert.ok(performance.now() - started < 5_000, "answered on the change, not at the timeout");
  });

  it("ends a long poll when the sidecar goes away", async () => {
    const { ask } = setup();
    const gone = new AbortController();
    const answer = ask(maxStatusWaitSeconds, gone.signal);
    setImmediate(() => gone.abort());
    assert.equal((await answer).status, 200);
  });

  it("refuses an expired token, a malformed wait, and a ninth long poll on one run", async () => {
    assert.equal(
      await refusal(setup({ expSeconds: Math.floor(Date.now() / 1000) - 1 }).ask(0)),
      "401 TokenInvalid",
    );
    const { ask } = setup();
    for (const wait of ["-1", "1.5", "0x10", String(maxStatusWaitSeconds + 1)]) {
      assert.equal(await refusal(ask(wait)), "400 BadRequest", wait);
    }
    const leave = new AbortController();
    const polls = Array.from({ length: 8 }, () => ask(maxStatusWaitSeconds, leave.signal));
    assert.equal(await refusal(ask(maxStatusWaitSeconds)), "429 TooManyRequests");
    leave.abort();
    await Promise.all(polls);
  });
});
