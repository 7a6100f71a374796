// Run-scoped credentials on the real control plane and a real PostgreSQL: a run's pod proves
// itself with a TokenRequest-bound token and gets a bundle that works only for its grants; every
// other caller is refused with a reason; and every kind of run end revokes within 5 seconds.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  BatchV1Api,
  CoreV1Api,
  EventsV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
} from "@kubernetes/client-node";
import { createLocalJWKSet, generateKeyPair, type JSONWebKeySet, jwtVerify, SignJWT } from "jose";
import type pg from "pg";
import type { CredentialBundle, RunClaims } from "../../api/credentials.ts";
import type { Action, Connection, LangGraphRun } from "../../api/v1alpha1.ts";
import {
  dynamicRoleName,
  ensureRunRole,
  generateRolePassword,
  listRunRoles,
  type PostgresAdmin,
  runRoleComment,
} from "../../operator/src/credentials/postgres-roles.ts";
import { eventually, kubeConfigFor, statusOf } from "../lib/cluster.ts";
import { CredentialApiClient, expiredPodToken, podOfRun, podToken } from "../lib/credentials.ts";
import { useOpenIdProvider } from "../lib/openid-provider.ts";
import { useOperator } from "../lib/operator.ts";
import { usePostgres } from "../lib/postgres.ts";
import {
  createRun,
  customObjects,
  deleteRun,
  readRun,
  runManifest,
  setUpRunNamespace,
  waitForPhase,
} from "../lib/runs.ts";

const admin = kubeConfigFor("admin");
const core = admin.makeApiClient(CoreV1Api);
const batch = admin.makeApiClient(BatchV1Api);
const eventsApi = admin.makeApiClient(EventsV1Api);
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const apiSecret = "kb-api-secret-value";

describe("run-scoped credentials", () => {
  // The operator's suite is removed first: finalizing its runs needs the database.
  const suite = useOperator("jit");
  const postgres = usePostgres();
  const idp = useOpenIdProvider({ tokenTtlSeconds: 3600 });
  let api: CredentialApiClient;
  let kbAdmin: PostgresAdmin;

  before(async () => {
    const namespace = suite.ns.name;
    const { kb, port } = postgres.server;
    kbAdmin = {
      host: "127.0.0.1",
      port,
      database: kb.database,
      sslMode: "disable",
      username: kb.adminUser,
      password: kb.adminPassword,
    };
    const secret = (name: string, data: Record<string, string>) =>
      core.createNamespacedSecret({ namespace, body: { metadata: { name }, stringData: data } });
    await secret("kb-admin", { username: kb.adminUser, password: kb.adminPassword });
    await secret("kb-api-token", { token: apiSecret });
    const { provider } = idp;
    await secret("kb-oauth", { clientSecret: provider.clientSecret, "ca.crt": provider.caPem });
    const connection = (name: string, spec: Connection["spec"]): Connection => ({
      apiVersion: "langgraph-jit.dev/v1alpha1",
      kind: "Connection",
      metadata: { name },
      spec,
    });
    const grants = [
      { connection: "kb-postgres", actions: ["read", "write"] as Action[] },
      { connection: "kb-api", actions: ["read"] as Action[] },
      { connection: "kb-oauth", actions: ["read"] as Action[] },
      { connection: "kb-archive", actions: ["read"] as Action[] },
      { connection: "kb-broken", actions: ["read"] as Action[] },
    ];
    await setUpRunNamespace(namespace, { grants }, [
      ...["kb-postgres", "kb-archive"].map((name) =>
        connection(name, {
          postgres: {
            host: "127.0.0.1",
            port,
            database: kb.database,
            sslMode: "disable",
            credentials: {
              secretRef: { name: "kb-admin" },
              dynamic: { actionRoles: kb.actionRoles },
            },
          },
        }),
      ),
      connection("kb-api", {
        http: {
          url: `https://kb-api.${namespace}.svc:8443`,
          auth: { bearer: { secretRef: { name: "kb-api-token", key: "token" } } },
        },
      }),
      connection("kb-broken", {
        http: {
          url: `https://kb-broken.${namespace}.svc:8443`,
          auth: { bearer: { secretRef: { name: "kb-broken-token", key: "token" } } },
        },
      }),
      connection("kb-oauth", {
        http: {
          url: `https://kb-oauth.${namespace}.svc:8443`,
          caSecretRef: { name: "kb-oauth", key: "ca.crt" },
          auth: {
            oauth2ClientCredentials: {
              tokenUrl: provider.tokenUrl,
              revocationUrl: provider.revocationUrl,
              clientId: provider.clientId,
              clientSecretRef: { name: "kb-oauth", key: "clientSecret" },
              scopes: ["kb.read"],
            },
          },
        },
      }),
    ]);
    api = new CredentialApiClient(suite.operator);
  });
  after(() => api?.close());

  /** A Running run of alice's and its (Pending) pod. */
  async function startRun(name: string, spec: Partial<LangGraphRun["spec"]> = {}) {
    await createRun("alice", suite.ns.name, runManifest(name, spec));
    const run = await waitForPhase(suite.ns.name, name, "Running");
    const pod = await podOfRun(suite.ns.name, name);
    return { run, pod };
  }

  async function issue(pod: V1Pod) {
    const answer = await api.issue<CredentialBundle>(await podToken(pod));
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return answer.body;
  }

  async function verify(bundle: CredentialBundle) {
    const jwks = (await api.jwks()).body as unknown as JSONWebKeySet;
    const { payload, protectedHeader } = await jwtVerify(bundle.token, createLocalJWKSet(jwks), {
      issuer: suite.operator.url,
      audience: "langgraph-jit-sidecar",
    });
    return { claims: payload as typeof payload & RunClaims, header: protectedHeader };
  }

  function login(bundle: CredentialBundle): Promise<pg.Client> {
    const credential = bundle.credentials["kb-postgres"];
    assert.equal(credential?.type, "postgres");
    if (credential?.type !== "postgres") throw new Error("no postgres credential");
    return postgres.server.connect(credential.username, credential.password, credential.database);
  }

  async function events(reason: string, name: string): Promise<string[]> {
    const list = await eventsApi.listNamespacedEvent({ namespace: suite.ns.name });
    return list.items
      .filter((e) => e.reason === reason && e.regarding?.name === name)
      .map((e) => e.note ?? "");
  }

  async function runRoles(): Promise<string[]> {
    return (await listRunRoles(kbAdmin)).map((role) => role.name);
  }

  it("issues the run's pod a signed bundle whose role works only for the granted actions", async () => {
    const { run, pod } = await startRun("granted");
    const bundle = await issue(pod);

    const { claims, header } = await verify(bundle);
    assert.equal(header.alg, "ES256");
    assert.ok(header.kid);
    assert.equal(claims.sub, run.metadata?.uid);
    assert.ok(claims.jti);
    assert.deepEqual(claims.pod, { name: pod.metadata?.name, uid: pod.metadata?.uid });
    assert.ok((claims.exp ?? 0) * 1000 <= Date.parse(run.status?.deadline ?? ""));
    assert.deepEqual(
      claims.grants.map((g) => [g.connection, g.type, g.actions]),
      [
        ["kb-postgres", "postgres", ["read", "write"]],
        ["kb-api", "http", ["read"]],
      ],
    );
    assert.deepEqual(bundle.credentials["kb-api"], {
      type: "http",
      url: `https://kb-api.${suite.ns.name}.svc:8443`,
      headers: { authorization: `Bearer ${apiSecret}` },
    });

    const session = await login(bundle);
    try {
      const role = bundle.credentials["kb-postgres"];
      assert.match(role?.type === "postgres" ? role.username : "", /^lgjit_granted_/);
      await session.query("SELECT count(*) FROM docs");
      await session.query("INSERT INTO docs (title, body) VALUES ('t', 'b')");
      await assert.rejects(session.query("CREATE TABLE mine (id int)"), { code: "42501" });
    } finally {
      await session.end();
    }

    const issued = await eventually("the credential status", async () => {
      const current = await readRun(suite.ns.name, "granted");
      return current?.status?.credential?.issuedAt ? current : undefined;
    });
    assert.ok(issued.status?.credential?.expiresAt);
    assert.equal(
      issued.status?.conditions?.find((c) => c.type === "CredentialIssued")?.status,
      "True",
    );
    assert.deepEqual((await api.status(bundle.token)).body.state, "active");
    await eventually(
      "a CredentialIssued event",
      async () => (await events("CredentialIssued", "granted")).length > 0,
    );
  });

  it("binds each token to its own pod's run: another run's pod gets only its own credential", async () => {
    const first = await startRun("first");
    const second = await startRun("second");
    const [a, b] = [await issue(first.pod), await issue(second.pod)];
    const [claimsA, claimsB] = [(await verify(a)).claims, (await verify(b)).claims];
    assert.equal(claimsA.sub, first.run.metadata?.uid);
    assert.equal(claimsB.sub, second.run.metadata?.uid);
    const roleOf = (bundle: CredentialBundle) => {
      const c = bundle.credentials["kb-postgres"];
      return c?.type === "postgres" ? c.username : "";
    };
    assert.notEqual(roleOf(a), roleOf(b));
  });

  it("mints an OAuth 2.0 token per run, never past its deadline, and revokes it when the run ends", async () => {
    const { run, pod } = await startRun("oauth", {
      access: [{ connection: "kb-oauth", actions: ["read"] }],
      maxDuration: "30m",
    });
    const bundle = await issue(pod);
    const credential = bundle.credentials["kb-oauth"];
    assert.equal(credential?.type, "http");
    if (credential?.type !== "http") return;
    const token = credential.headers.authorization?.replace(/^Bearer /, "") ?? "";
    const introspected = await idp.provider.introspect(token);
    assert.equal(introspected.active, true);
    assert.equal(introspected.scope, "kb.read");
    // The provider's tokens live an hour; the run's credential ends with its 30-minute deadline.
    assert.ok(Date.parse(credential.expiresAt ?? "") <= Date.parse(run.status?.deadline ?? ""));
    assert.ok(Date.parse(bundle.expiresAt) <= Date.parse(credential.expiresAt ?? ""));

    await deleteRun("alice", suite.ns.name, "oauth");
    const ended = Date.now();
    await eventually(
      "the token to be revoked at the provider",
      async () => ((await idp.provider.introspect(token)).active ? undefined : true),
      5_000,
    );
    // The token's record goes once the provider has revoked it, a moment after.
    await eventually(
      "the minted token's record to be deleted",
      async () => {
        const records = await core.listNamespacedSecret({
          namespace: suite.system.name,
          labelSelector: "langgraph-jit.dev/minted-tokens",
        });
        return records.items.length === 0;
      },
      5_000,
    );
    assert.ok(Date.now() - ended <= 5_000);
  });

  it("holds a Connection's deletion until the runs holding credentials through it are revoked", async () => {
    const { pod } = await startRun("archive", {
      access: [{ connection: "kb-archive", actions: ["read"] }],
    });
    const bundle = await issue(pod);
    const role = bundle.credentials["kb-archive"];
    const roleName = role?.type === "postgres" ? role.username : "";
    const custom = customObjects();
    const target = {
      group: "langgraph-jit.dev",
      version: "v1alpha1",
      namespace: suite.ns.name,
      plural: "connections",
      name: "kb-archive",
    };
    await eventually("the Connection to be protected", async () => {
      const current = (await custom.getNamespacedCustomObject(target)) as Connection;
      return current.metadata?.finalizers?.includes("langgraph-jit.dev/connection-in-use");
    });
    await custom.deleteNamespacedCustomObject(target);
    // A negative check: time for the operator to wrongly release the Connection (nothing it
    // emits says it chose to keep it).
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const deleting = (await custom.getNamespacedCustomObject(target)) as Connection;
    assert.ok(deleting.metadata?.deletionTimestamp, "the Connection is not being deleted");
    assert.ok((await runRoles()).includes(roleName));

    await deleteRun("alice", suite.ns.name, "archive");
    await eventually("the role to be dropped", async () =>
      (await runRoles()).includes(roleName) ? undefined : true,
    );
    await eventually("the Connection to be gone", async () =>
      custom.getNamespacedCustomObject(target).then(
        () => undefined,
        (error: unknown) => statusOf(error) === 404,
      ),
    );
  });

  describe("refuses, issues nothing and says why", () => {
    let refused: { run: LangGraphRun; pod: V1Pod };
    before(async () => {
      refused = await startRun("refusals");
    });

    async function expectRefused(token: string, status: number, reason: string) {
      const before = await runRoles();
      const answer = await api.issue(token);
      assert.equal(answer.status, status, JSON.stringify(answer.body));
      assert.equal(answer.body.reason, reason);
      assert.equal(typeof answer.body.error, "string");
      assert.deepEqual(await runRoles(), before, "a refused request created a role");
      return answer.body;
    }

    it("a token for another audience", async () => {
      await expectRefused(await podToken(refused.pod, "some-other-audience"), 401, "TokenInvalid");
    });

    it("an expired token", async () => {
      await expectRefused(await expiredPodToken(refused.pod), 401, "TokenInvalid");
    });

    it("no token, and a token that is not a JWT", async () => {
      const none = await api.issue("");
      assert.deepEqual([none.status, none.body.reason], [401, "Unauthenticated"]);
      await expectRefused("not-a-token", 401, "TokenInvalid");
    });

    it("the token of a pod no run owns, and of that pod once deleted", async () => {
      const pod = await core.createNamespacedPod({
        namespace: suite.ns.name,
        body: {
          metadata: { name: "stray" },
          spec: { containers: [{ name: "c", image: "example.invalid/c:1" }] },
        },
      });
      const token = await podToken(pod);
      const body = await expectRefused(token, 403, "NotARunPod");
      assert.match(String(body.error), /pod .*\/stray is not owned by a Job/);
      await eventually(
        "a CredentialRefused event on the pod",
        async () => (await events("CredentialRefused", "stray")).length > 0,
      );
      await core.deleteNamespacedPod({
        namespace: suite.ns.name,
        name: "stray",
        gracePeriodSeconds: 0,
      });
      // The API server may still accept the token for a few seconds (it caches reviews); the
      // operator then finds the pod gone.
      const answer = await api.issue(token);
      assert.ok([401, 403].includes(answer.status), JSON.stringify(answer.body));
      assert.ok(["PodNotFound", "TokenInvalid"].includes(String(answer.body.reason)));
    });

    it("a pod of a run that was denied", async () => {
      await createRun(
        "mallory",
        suite.ns.name,
        runManifest("denied", { access: [{ connection: "kb-postgres", actions: ["read"] }] }),
      );
      const denied = await waitForPhase(suite.ns.name, "denied", "Denied");
      // Only an administrator could make this Job, under the very name the operator gives a run's
      // Job; the operator must still refuse its pod.
      await batch.createNamespacedJob({
        namespace: suite.ns.name,
        body: {
          metadata: {
            name: "denied",
            ownerReferences: [
              {
                apiVersion: "langgraph-jit.dev/v1alpha1",
                kind: "LangGraphRun",
                name: "denied",
                uid: denied.metadata?.uid ?? "",
                controller: true,
              },
            ],
          },
          spec: {
            backoffLimit: 0,
            template: {
              metadata: { labels: { "langgraph-jit.dev/run": "denied" } },
              spec: {
                restartPolicy: "Never",
                containers: [{ name: "c", image: "example.invalid/c:1" }],
              },
            },
          },
        },
      });
      const pod = await podOfRun(suite.ns.name, "denied");
      const body = await expectRefused(await podToken(pod), 403, "NotARunPod");
      assert.match(
        String(body.error),
        /Job .*\/denied is not the Job langgraph-jit created for LangGraphRun denied/,
      );
      await eventually(
        "a CredentialRefused event on the pod",
        async () => (await events("CredentialRefused", pod.metadata?.name ?? "")).length > 0,
      );
    });

    it("a pod made by hand that claims a running run's Job, and a Job that claims the run", async () => {
      const namespace = suite.ns.name;
      const job = await batch.readNamespacedJob({ namespace, name: "refusals" });
      const claim = (kind: string, name: string, uid: string, apiVersion: string) => [
        { apiVersion, kind, name, uid, controller: true },
      ];
      // It reads the sidecar's token from its own volume: the operator must not serve it. It
      // carries the Job's labels, so the Job controller keeps it rather than releasing it.
      const spy = await core.createNamespacedPod({
        namespace,
        body: {
          metadata: {
            name: "spy",
            labels: job.spec?.template.metadata?.labels,
            ownerReferences: claim("Job", "refusals", job.metadata?.uid ?? "", "batch/v1"),
          },
          spec: {
            containers: [
              {
                name: "graph",
                image: "example.invalid/spy:1",
                volumeMounts: [{ name: "t", mountPath: "/t" }],
              },
            ],
            volumes: [
              {
                name: "t",
                projected: {
                  sources: [{ serviceAccountToken: { audience: "langgraph-jit", path: "t" } }],
                },
              },
            ],
          },
        },
      });
      const spyRefusal = await expectRefused(await podToken(spy), 403, "NotARunPod");
      assert.match(
        String(spyRefusal.error),
        /pod .*\/spy is not the pod of Job refusals: initContainers has 0 containers, the Job's template 1/,
      );

      await batch.createNamespacedJob({
        namespace,
        body: {
          metadata: {
            name: "impostor",
            ownerReferences: claim(
              "LangGraphRun",
              "refusals",
              refused.run.metadata?.uid ?? "",
              "langgraph-jit.dev/v1alpha1",
            ),
          },
          spec: {
            backoffLimit: 0,
            // The run's own pod template, sidecar and all: only the Job's name gives it away.
            template: { spec: job.spec?.template.spec },
          },
        },
      });
      const impostor = await eventually("the impostor Job's pod", async () => {
        const pods = await core.listNamespacedPod({
          namespace,
          labelSelector: "job-name=impostor",
        });
        return pods.items[0];
      });
      const impostorRefusal = await expectRefused(await podToken(impostor), 403, "NotARunPod");
      assert.match(
        String(impostorRefusal.error),
        /is not the Job langgraph-jit created for LangGraphRun refusals/,
      );
    });

    it("a credential the Connection cannot produce as configured: 424, said on the run, no bundle at all", async () => {
      const { pod } = await startRun("broken", {
        access: [
          { connection: "kb-postgres", actions: ["read"] },
          { connection: "kb-broken", actions: ["read"] },
        ],
      });
      const answer = await api.issue(await podToken(pod));
      assert.deepEqual(
        [answer.status, answer.body.reason],
        [424, "CredentialMisconfigured"],
        String(answer.body.error),
      );
      assert.match(String(answer.body.error), /Secret .*\/kb-broken-token does not exist/);
      assert.equal(answer.body.token, undefined);
      assert.equal(answer.body.credentials, undefined);
      const run = await eventually("the run to say why", async () => {
        const current = await readRun(suite.ns.name, "broken");
        const condition = current?.status?.conditions?.find((c) => c.type === "CredentialIssued");
        return condition?.status === "False" ? condition : undefined;
      });
      assert.equal(run.reason, "CredentialMisconfigured");
      assert.match(
        run.message,
        /connection "kb-broken": Secret .*\/kb-broken-token does not exist/,
      );
    });

    it("a forged, an unsigned and a foreign-key run token", async () => {
      const bundle = await issue(refused.pod);
      const [header, payload] = bundle.token.split(".");
      const forgedPayload = Buffer.from(
        JSON.stringify({
          ...JSON.parse(Buffer.from(payload ?? "", "base64url").toString()),
          sub: "x",
        }),
      ).toString("base64url");
      const unsigned = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
      const tampered = `${header}.${forgedPayload}.${bundle.token.split(".")[2]}`;
      const { privateKey } = await generateKeyPair("ES256");
      const foreign = await new SignJWT(
        JSON.parse(Buffer.from(payload ?? "", "base64url").toString()),
      )
        .setProtectedHeader({
          alg: "ES256",
          kid: JSON.parse(Buffer.from(header ?? "", "base64url").toString()).kid,
        })
        .sign(privateKey);
      for (const token of [unsigned, tampered, foreign]) {
        const answer = await api.status(token);
        assert.deepEqual([answer.status, answer.body.reason], [401, "TokenInvalid"], token);
      }
      assert.equal((await api.status(bundle.token)).status, 200);
    });
  });

  describe("revokes on every kind of run end, within 5 seconds", () => {
    const endings: [
      string,
      Partial<LangGraphRun["spec"]>,
      (run: string, pod: V1Pod) => Promise<void>,
    ][] = [
      ["succeeded", {}, (_, pod) => setPodPhase(pod, "Succeeded")],
      ["failed", {}, (_, pod) => setPodPhase(pod, "Failed")],
      [
        "expired",
        { maxDuration: "12s" },
        async (name) => {
          const run = await readRun(suite.ns.name, name);
          const wait = Date.parse(run?.status?.deadline ?? "") - Date.now();
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
        },
      ],
      [
        "cancelled",
        {},
        async (name) => {
          await deleteRun("alice", suite.ns.name, name);
        },
      ],
    ];

    async function setPodPhase(pod: V1Pod, phase: "Succeeded" | "Failed") {
      const now = new Date().toISOString();
      await core.patchNamespacedPodStatus(
        {
          namespace: suite.ns.name,
          name: pod.metadata?.name ?? "",
          body: {
            status: {
              phase,
              conditions: [{ type: "Ready", status: "False", lastTransitionTime: new Date(now) }],
              containerStatuses: [
                {
                  name: "graph",
                  image: "example.invalid/kb-graph:1.4",
                  imageID: "",
                  ready: false,
                  restartCount: 0,
                  state: {
                    terminated: {
                      exitCode: phase === "Succeeded" ? 0 : 1,
                      startedAt: new Date(now),
                      finishedAt: new Date(now),
                    },
                  },
                },
              ],
            },
          },
        },
        mergePatch,
      );
    }

    for (const [ending, spec, end] of endings) {
      it(`when the run is ${ending}`, async () => {
        const name = `end-${ending}`;
        const { pod } = await startRun(name, spec);
        const bundle = await issue(pod);
        const session = await login(bundle);
        session.on("error", () => {});
        await session.query("SELECT 1");
        const token = await podToken(pod);

        await end(name, pod);
        const ended = Date.now();
        const watching = api.status(bundle.token, 25);
        await eventually(
          "the run's session to be terminated",
          async () =>
            await session.query("SELECT 1").then(
              () => false,
              () => true,
            ),
          5_000,
        );
        await assert.rejects(login(bundle), "the dropped role still logs in");
        const status = await watching;
        assert.equal(status.status, 401);
        // Past the deadline the token has also expired, which is reason enough.
        const reasons = ending === "expired" ? ["Revoked", "TokenInvalid"] : ["Revoked"];
        assert.ok(reasons.includes(String(status.body.reason)), JSON.stringify(status.body));
        const elapsed = Date.now() - ended;
        assert.ok(elapsed <= 5_000, `credentials still worked ${elapsed} ms after the run ended`);

        const again = await api.issue(token);
        assert.ok([401, 403].includes(again.status), JSON.stringify(again.body));
        // NOLOGIN and the terminated sessions stopped it; the drop itself may finish just after.
        const role = bundle.credentials["kb-postgres"];
        const roleName = role?.type === "postgres" ? role.username : "";
        await eventually("the role to be dropped", async () =>
          (await runRoles()).includes(roleName) ? undefined : true,
        );
        if (ending !== "cancelled") {
          // Revocation comes first, then the terminal status that records it.
          await eventually(
            "revokedAt to be recorded",
            async () => (await readRun(suite.ns.name, name))?.status?.credential?.revokedAt,
          );
          await eventually(
            "a CredentialsRevoked event",
            async () => (await events("CredentialsRevoked", name)).length > 0,
          );
        }
        await session.end().catch(() => {});
      });
    }
  });

  // Last: it restarts the operator.
  it("drops, when the operator starts, roles whose runs are gone", async () => {
    const orphan = { namespace: suite.ns.name, name: "crashed", uid: randomUUID() };
    const name = dynamicRoleName(orphan, "kb-postgres");
    await ensureRunRole(kbAdmin, {
      name,
      password: generateRolePassword(),
      validUntil: new Date(Date.now() + 3_600_000),
      memberOf: ["kb_read"],
      comment: runRoleComment(orphan, "kb-postgres"),
    });
    assert.ok((await runRoles()).includes(name));
    await suite.operator.stop();
    await suite.operator.restart();
    await eventually(
      "the orphaned role to be dropped",
      async () => ((await runRoles()).includes(name) ? undefined : true),
      20_000,
    );
  });
});
