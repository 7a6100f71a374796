// The credential client against a real HTTPS server playing the operator's credential API:
// a bundle is held only after every check passes, retries follow the operator's answers, and
// revocation and expiry take readiness away at once.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { closeAdminServer, startAdminServer } from "../admin-server.ts";
import { createSidecarMetrics } from "../metrics.ts";
import {
  CredentialApiServer,
  createSigningKey,
  createTestAuthority,
  testIdentity,
} from "../testing/credential-api-server.ts";
import { freePort, httpGet, waitFor } from "../testing/test-helpers.ts";
import {
  type CredentialChange,
  CredentialClient,
  type CredentialTiming,
} from "./credential-client.ts";

const podToken = "pod-token-1";
const fastTiming: Partial<CredentialTiming> = {
  retry: { initialMs: 40, maxMs: 200 },
  slowRetry: { initialMs: 80, maxMs: 300 },
};

interface Harness {
  client: CredentialClient;
  metrics: ReturnType<typeof createSidecarMetrics>;
  logs: Array<{ msg: string; reason?: string }>;
  changes: CredentialChange[];
  ready(): Promise<{ status: number; body: Record<string, unknown> }>;
  failures(reason: string): Promise<number>;
}

describe("credential client", () => {
  let directory: string;
  let tokenFile: string;
  const running: Array<() => Promise<void>> = [];

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "lgjit-sidecar-"));
    tokenFile = join(directory, "token");
  });
  after(() => rm(directory, { recursive: true, force: true }));
  afterEach(async () => {
    await Promise.all(running.splice(0).map((stop) => stop()));
  });

  async function operator(options: { port?: number } = {}): Promise<CredentialApiServer> {
    const server = await CredentialApiServer.create(options);
    running.push(() => server.close());
    return server;
  }

  async function sidecar(
    server: CredentialApiServer,
    options: { ca?: string; timing?: Partial<CredentialTiming> } = {},
  ): Promise<Harness> {
    await writeFile(tokenFile, `${podToken}\n`);
    const logs: Harness["logs"] = [];
    const logger = pino(
      { level: "debug" },
      { write: (line: string) => void logs.push(JSON.parse(line)) },
    );
    const metrics = createSidecarMetrics();
    const client = new CredentialClient({
      operatorUrl: server.url,
      operatorCa: options.ca ?? server.caPem,
      tokenFile,
      identity: testIdentity,
      logger,
      metrics,
      timing: { ...fastTiming, ...options.timing },
    });
    const changes: CredentialChange[] = [];
    client.subscribe((change) => changes.push(change));
    const admin: Server = await startAdminServer({
      host: "127.0.0.1",
      port: 0,
      registry: metrics.registry,
      readiness: () => client.readiness(),
      logger,
    });
    running.push(async () => {
      await client.stop();
      await closeAdminServer(admin);
    });
    client.start();
    const { port } = admin.address() as AddressInfo;
    return {
      client,
      metrics,
      logs,
      changes,
      async ready() {
        const { status, body } = await httpGet(`http://127.0.0.1:${port}/ready`);
        return { status, body: JSON.parse(body) };
      },
      async failures(reason) {
        const { values } = await metrics.fetchFailures.get();
        return values.find((v) => v.labels.reason === reason)?.value ?? 0;
      },
    };
  }

  it("holds a verified bundle and reports ready", async () => {
    const server = await operator();
    await server.listen();
    const { client, ready } = await sidecar(server);
    await waitFor("ready", async () => (await ready()).status === 200);
    const held = client.current();
    assert.equal(client.state, "active");
    assert.equal(held?.claims.sub, testIdentity.runUid);
    assert.equal(held?.credentials["kb-api"]?.type, "http");
    assert.equal(server.issueRequests[0]?.authorization, `Bearer ${podToken}`);
    assert.equal((await ready()).body.ready, true);
  });

  it("retries while the operator is unreachable and becomes ready once it answers", async () => {
    const port = await freePort();
    const server = await operator({ port });
    const { ready, failures } = await sidecar(server);
    await waitFor("two failed attempts", async () => (await failures("Unreachable")) >= 2);
    const notYet = await ready();
    assert.equal(notYet.status, 503);
    assert.match(String(notYet.body.reason), /ECONNREFUSED/);
    await server.listen();
    await waitFor("ready after the operator came up", async () => (await ready()).status === 200);
  });

  it("retries after 5xx answers", async () => {
    const server = await operator();
    await server.listen();
    const valid = server.onIssue;
    server.onIssue = async (request) =>
      server.issueRequests.length <= 2
        ? { status: 503, body: { error: "apiserver unavailable", reason: "Internal" } }
        : valid(request);
    const { ready, failures } = await sidecar(server);
    await waitFor("ready after two 503s", async () => (await ready()).status === 200);
    assert.equal(await failures("ServerError"), 2);
  });

  it("logs a refusal's reason and retries it at the slow pace", async () => {
    const server = await operator();
    await server.listen();
    const valid = server.onIssue;
    server.onIssue = async (request) =>
      server.issueRequests.length <= 2
        ? {
            status: 403,
            body: { error: "run agents/kb-refresh is Pending", reason: "RunNotRunning" },
          }
        : valid(request);
    const { ready, logs, failures } = await sidecar(server, {
      timing: { slowRetry: { initialMs: 400, maxMs: 800 } },
    });
    await waitFor("ready after two refusals", async () => (await ready()).status === 200);
    assert.equal(await failures("RunNotRunning"), 2);
    assert.ok(logs.some((line) => line.reason === "RunNotRunning" && /Pending/.test(line.msg)));
    const [first, second] = server.issueRequests;
    // The slow backoff waits at least half its initial delay; the fast one would retry in 20 ms.
    assert.ok((second?.at ?? 0) - (first?.at ?? 0) >= 200);
  });

  it("backs off rarely while the operator says a Connection is misconfigured", async () => {
    const server = await operator();
    await server.listen();
    const valid = server.onIssue;
    server.onIssue = async (request) =>
      server.issueRequests.length <= 1
        ? {
            status: 424,
            body: {
              error: 'connection "kb-postgres": action role "kb_read" does not exist',
              reason: "CredentialMisconfigured",
            },
          }
        : valid(request);
    const { ready, failures } = await sidecar(server, {
      timing: {
        slowRetry: { initialMs: 40, maxMs: 80 },
        rareRetry: { initialMs: 600, maxMs: 1_200 },
      },
    });
    await waitFor(
      "ready once the Connection was fixed",
      async () => (await ready()).status === 200,
    );
    assert.equal(await failures("CredentialMisconfigured"), 1);
    const [first, second] = server.issueRequests;
    // At least half the rare backoff's first delay: the slow one would have retried in 40 ms.
    assert.ok((second?.at ?? 0) - (first?.at ?? 0) >= 300);
  });

  describe("refuses a bundle that fails a check", () => {
    const cases: Array<{
      name: string;
      check: RegExp;
      token: (server: CredentialApiServer) => Promise<string>;
      expiresAt?: () => string;
    }> = [
      {
        name: "signed by an unknown key that claims a published kid",
        check: /signature verification failed/,
        token: async (server) =>
          server.signRunToken({
            key: { ...(await createSigningKey()), kid: server.published[0]?.kid ?? "" },
          }),
      },
      {
        name: "signed by an unknown key with its own kid",
        check: /no applicable key found/,
        token: async (server) => server.signRunToken({ key: await createSigningKey() }),
      },
      {
        name: "with alg none",
        check: /alg/,
        token: async (server) => server.unsignedRunToken(),
      },
      {
        name: "with alg HS256 keyed by the published public key",
        check: /alg/,
        token: async (server) => {
          const { SignJWT } = await import("jose");
          const key = server.published[0];
          const secret = Buffer.from(JSON.stringify(key?.publicJwk));
          const valid = JSON.parse(
            Buffer.from((await server.signRunToken()).split(".")[1] ?? "", "base64url").toString(),
          );
          return new SignJWT(valid)
            .setProtectedHeader({ alg: "HS256", kid: key?.kid })
            .sign(secret);
        },
      },
      {
        name: "for another audience",
        check: /unexpected "aud" claim value/,
        token: (server) => server.signRunToken({ claims: { aud: "langgraph-jit" } }),
      },
      {
        name: "from another issuer",
        check: /unexpected "iss" claim value/,
        token: (server) => server.signRunToken({ claims: { iss: "https://evil.example" } }),
      },
      {
        name: "for another run (sub)",
        check: /unexpected "sub" claim value/,
        token: (server) => server.signRunToken({ claims: { sub: "another-run-uid" } }),
      },
      {
        name: "whose run.uid differs from sub",
        check: /claim run.uid/,
        token: (server) =>
          server.signRunToken({
            claims: {
              run: { namespace: "agents", name: "kb-refresh", uid: "other", deadline: "" },
            },
          }),
      },
      {
        name: "for another pod",
        check: /claim pod.uid/,
        token: (server) =>
          server.signRunToken({
            claims: { pod: { name: testIdentity.podName, uid: "another-pod-uid" } },
          }),
      },
      {
        name: "that has expired",
        check: /"exp" claim timestamp check failed/,
        token: (server) => server.signRunToken({ lifetimeSeconds: -5 }),
      },
      {
        name: "without a jti",
        check: /"jti" claim/,
        token: (server) => server.signRunToken({ claims: { jti: undefined } }),
      },
      {
        name: "without a kid",
        check: /no kid/,
        token: (server) => server.signRunToken({ header: { kid: undefined } }),
      },
      {
        name: "whose bundle expiresAt has passed",
        check: /bundle expired/,
        token: (server) => server.signRunToken(),
        expiresAt: () => new Date(Date.now() - 1000).toISOString(),
      },
    ];
    for (const { name, check, token, expiresAt } of cases) {
      it(`a JWT ${name}`, async () => {
        const server = await operator();
        await server.listen();
        server.onIssue = async () => ({
          status: 200,
          body: server.bundleFor(await token(server), expiresAt?.()),
        });
        const { client, ready, logs, changes, failures } = await sidecar(server);
        await waitFor("two rejected bundles", async () => (await failures("BundleRejected")) >= 2);
        const answer = await ready();
        assert.equal(answer.status, 503);
        assert.match(String(answer.body.reason), check);
        assert.equal(client.current(), undefined);
        assert.equal(client.state, "pending");
        assert.deepEqual(changes, []);
        assert.ok(
          logs.some((line) => check.test(line.msg)),
          `a log line matching ${check}`,
        );
      });
    }
  });

  it("fetches the key set again for a kid published since its last fetch", async () => {
    const server = await operator();
    await server.listen();
    const rotated = await createSigningKey();
    server.onIssue = async () => {
      if (server.issueRequests.length === 1) {
        return { status: 200, body: await server.bundle({ lifetimeSeconds: 2 }) };
      }
      server.published = [rotated, ...server.published];
      return { status: 200, body: await server.bundle({ key: rotated }) };
    };
    const { client } = await sidecar(server);
    await waitFor(
      "the refreshed bundle signed by the new key",
      () => client.current()?.kid === rotated.kid,
      4_000,
    );
    // The key set was fresh by age: only the unknown kid made the client fetch it again.
    assert.equal(server.jwksRequests, 2);
  });

  it("fetches the key set for an unknown kid at most once per cooldown", async () => {
    const server = await operator();
    await server.listen();
    const unknown = await createSigningKey();
    server.onIssue = async () => ({ status: 200, body: await server.bundle({ key: unknown }) });
    const { client, failures } = await sidecar(server);
    await waitFor("four rejected bundles", async () => (await failures("BundleRejected")) >= 4);
    assert.equal(server.jwksRequests, 2);
    assert.equal(client.current(), undefined);
  });

  it("refuses a bundle signed by a key rotated out of the key set", async () => {
    const server = await operator();
    await server.listen();
    const [retired] = server.published;
    const successor = await createSigningKey();
    server.onIssue = async () => {
      // From the refresh on, the key set no longer has the key the bundle is signed with.
      if (server.issueRequests.length > 1) server.published = [successor];
      return { status: 200, body: await server.bundle({ key: retired, lifetimeSeconds: 3 }) };
    };
    const { client, ready, changes, logs } = await sidecar(server, {
      // Older than this when the refresh (at least a second later) verifies its bundle.
      timing: { jwksMaxAgeMs: 300 },
    });
    await waitFor("ready", async () => (await ready()).status === 200);
    const first = client.current()?.claims.jti;
    await waitFor("not ready", async () => (await ready()).status === 503, 5_000);
    assert.ok(server.issueRequests.length >= 2);
    assert.ok(server.jwksRequests >= 2);
    // Only the bundle verified before the rotation was ever held.
    await waitFor("the pending notification", () => changes.length === 2, 1_000);
    assert.deepEqual(
      changes.map((c) => [c.state, c.credential?.claims.jti]),
      [
        ["active", first],
        ["pending", undefined],
      ],
    );
    assert.ok(logs.some((line) => /no applicable key found/.test(line.msg)));
  });

  it("re-reads the token file for every fetch", async () => {
    const server = await operator();
    await server.listen();
    server.onIssue = async () => ({
      status: 200,
      body: await server.bundle({ lifetimeSeconds: 2 }),
    });
    const { ready } = await sidecar(server);
    await waitFor("ready", async () => (await ready()).status === 200);
    await writeFile(tokenFile, "pod-token-2\n");
    await waitFor("a refresh", () => server.issueRequests.length >= 2);
    assert.equal(server.issueRequests[0]?.authorization, `Bearer ${podToken}`);
    assert.equal(server.issueRequests[1]?.authorization, "Bearer pod-token-2");
    assert.equal((await ready()).status, 200);
  });

  it("drops the credential when it expires and cannot be refreshed", async () => {
    const server = await operator();
    await server.listen();
    server.onIssue = async () =>
      server.issueRequests.length === 1
        ? { status: 200, body: await server.bundle({ lifetimeSeconds: 2 }) }
        : { status: 503, body: { error: "down", reason: "Internal" } };
    const { client, ready, changes, logs } = await sidecar(server);
    await waitFor("ready", async () => (await ready()).status === 200);
    const expiresAt = client.current()?.expiresAt.getTime() ?? 0;
    await waitFor("not ready", async () => (await ready()).status === 503, 4_000);
    // Dropped at expiry, not earlier, and not much later.
    const lateMs = Date.now() - expiresAt;
    assert.ok(lateMs >= 0 && lateMs < 1_000, `dropped ${lateMs} ms after expiry`);
    // Dropped for its expiry; /ready's reason then follows the failing refetches, so it races.
    assert.ok(
      logs.some((line) => line.msg === "credential dropped" && /expired/.test(String(line.reason))),
    );
    // /ready reads the clock; the notification follows from the expiry timer a moment later.
    await waitFor("the pending notification", () => changes.length === 2, 1_000);
    assert.deepEqual(
      changes.map((c) => c.state),
      ["active", "pending"],
    );
  });

  it("drops readiness within a second of revocation and never fetches again", async () => {
    const server = await operator();
    await server.listen();
    const { client, ready, changes } = await sidecar(server);
    await waitFor("a held status poll", () => server.heldPolls === 1);
    assert.equal((await ready()).status, 200);
    assert.equal(server.statusRequests[0]?.authorization, `Bearer ${client.current()?.token}`);
    const issued = server.issueRequests.length;
    const revokedAt = Date.now();
    server.revoke();
    await waitFor("not ready", async () => (await ready()).status === 503, 1_000);
    assert.ok(Date.now() - revokedAt < 1_000);
    assert.equal(client.state, "revoked");
    assert.equal(client.current(), undefined);
    assert.match(String((await ready()).body.reason), /revoked/);
    // The server would issue a valid bundle, but a revoked run is never asked for one again.
    await sleep(1_000);
    assert.equal(server.issueRequests.length, issued);
    assert.equal((await ready()).status, 503);
    assert.deepEqual(
      changes.map((c) => c.state),
      ["active", "revoked"],
    );
  });

  it("forwards nothing while the operator is silent past silenceMs, and resumes when it answers", async () => {
    const server = await operator();
    await server.listen();
    const { client, ready, logs } = await sidecar(server, {
      timing: { statusWaitSeconds: 0, minStatusIntervalMs: 100, silenceMs: 800 },
    });
    await waitFor("ready", async () => (await ready()).status === 200);
    const issued = server.issueRequests.length;
    // The status endpoint fails (unreachable, say): a revocation could not get through.
    server.onStatus = () => ({ status: 503, body: { error: "down", reason: "Internal" } });
    const silentAt = Date.now();
    await waitFor("not ready", async () => (await ready()).status === 503, 3_000);
    assert.ok(Date.now() - silentAt >= 600, "stopped before the operator was silent for long");
    assert.equal(client.current(), undefined, "the data path still gets a credential");
    assert.equal(client.state, "active", "the credential is kept, only not used");
    assert.match(String((await ready()).body.reason), /the operator has not answered for \d+ s/);
    server.onStatus = () => undefined;
    await waitFor("ready again", async () => (await ready()).status === 200, 3_000);
    assert.ok(client.current());
    assert.equal(server.issueRequests.length, issued, "resuming needs no new bundle");
    assert.ok(logs.some((line) => /forwarding resumes/.test(line.msg)));
  });

  it("drops a run JWT the status endpoint refuses and fetches a new bundle", async () => {
    const server = await operator();
    await server.listen();
    server.onStatus = () =>
      server.statusRequests.length === 1
        ? { status: 401, body: { error: "unknown jti", reason: "TokenInvalid" } }
        : undefined;
    const { client, changes } = await sidecar(server);
    await waitFor("a second bundle", () => changes.length === 3);
    assert.deepEqual(
      changes.map((c) => c.state),
      ["active", "pending", "active"],
    );
    assert.equal(server.issueRequests.length, 2);
    assert.notEqual(changes[0]?.credential?.claims.jti, client.current()?.claims.jti);
  });

  it("refuses an operator whose certificate does not chain to LGJIT_OPERATOR_CA", async () => {
    const server = await operator();
    await server.listen();
    const otherCa = await createTestAuthority();
    const { ready, failures } = await sidecar(server, { ca: otherCa.certPem });
    await waitFor("two refused handshakes", async () => (await failures("TlsUntrusted")) >= 2);
    assert.equal((await ready()).status, 503);
    // The TLS handshake failed: the pod's token never reached the impostor.
    assert.equal(server.issueRequests.length, 0);
  });
});
