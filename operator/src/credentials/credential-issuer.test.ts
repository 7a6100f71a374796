// Issuance's decisions against an in-memory cluster: only the pod of a Running, sealed run within
// its deadline, whose grant still holds, gets a bundle bound to it (invariant 2); what is minted
// for a run that ends meanwhile is revoked; status and Events say which credential the run holds.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Job, V1Pod, V1PodSpec } from "@kubernetes/client-node";
import pino from "pino";
import {
  type GrantClaim,
  type RunClaims,
  runTokenAudience,
  type UpstreamCredential,
} from "../../../api/credentials.ts";
import {
  type AccessPolicy,
  type AnyConnection,
  annotations,
  apiVersion,
  type Connection,
  type LangGraphRun,
  type LangGraphRunStatus,
  type RunAccess,
} from "../../../api/v1alpha1.ts";
import { metaTime } from "../kube/meta.ts";
import { isClusterConnection } from "../policy/namespace-connections.ts";
import { findCondition } from "../runs/conditions.ts";
import { StatusSeal } from "../runs/status-seal.ts";
import { HttpError } from "../server/https-server.ts";
import { clusterConnection, httpConnection, postgresConnection } from "../testing/connections.ts";
import { apiError, FakeCluster } from "../testing/fake-cluster.ts";
import { alice, testRun } from "../testing/runs.ts";
import { CredentialIssuer } from "./credential-issuer.ts";
import type { SignOptions } from "./signing-keys.ts";
import type { PodIdentity } from "./token-review.ts";

const seal = new StatusSeal(Buffer.alloc(32, 11));
const start = Date.parse("2026-12-05T10:00:00Z");
const startedAt = "2026-12-05T10:00:00Z";
const deadline = "2026-12-05T10:30:00Z";
const deadlineMs = Date.parse(deadline);
const tokenTtlMs = 10 * 60_000;
const issuerUrl = "https://operator.langgraph-jit.svc:8443";
const podSpec: V1PodSpec = {
  serviceAccountName: "langgraph-jit-run",
  containers: [
    { name: "graph", image: "g" },
    { name: "sidecar", image: "sidecar:test" },
  ],
};

const controller = { controller: true, blockOwnerDeletion: true };

/** The projected token of each pod of the run's Job, as TokenReview would vouch for it. */
const pods = {
  first: { token: "token-of-r-abcde", podName: "r-abcde", podUid: "pod-1" },
  retry: { token: "token-of-r-fghij", podName: "r-fghij", podUid: "pod-2" },
};

function identityOf(pod: { podName: string; podUid: string }): PodIdentity {
  return { namespace: "agents", serviceAccount: "langgraph-jit-run", ...pod };
}

function sealed(status: LangGraphRunStatus, uid = "uid-r"): LangGraphRunStatus {
  return { ...status, seal: seal.ofStatus(uid, status) };
}

const running: LangGraphRunStatus = { phase: "Running", startedAt, deadline, jobUID: "job-1" };

function policy(spec: Partial<AccessPolicy["spec"]> = {}): AccessPolicy {
  return {
    metadata: { name: "ml-platform", namespace: "agents" },
    spec: {
      subjects: [{ kind: "Group", name: "ml-platform" }],
      maxDuration: "1h",
      grants: [{ connection: "kb-postgres", actions: ["read"] }],
      ...spec,
    },
  };
}

function inAgents(connection: Connection): Connection {
  return { ...connection, metadata: { ...connection.metadata, namespace: "agents" } };
}

const staticPostgres = inAgents(postgresConnection());
const dynamicPostgres = inAgents(
  postgresConnection("kb-postgres", {
    credentials: {
      secretRef: { name: "kb-admin" },
      dynamic: { actionRoles: { read: "kb_reader" } },
    },
  }),
);
const kbApi = inAgents(httpConnection());

function runJob(run: LangGraphRun): V1Job {
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: "r",
      namespace: "agents",
      uid: "job-1",
      annotations: { [annotations.seal]: seal.ofJob(run, "r") },
      ownerReferences: [
        { apiVersion, kind: "LangGraphRun", name: "r", uid: "uid-r", ...controller },
      ],
    },
    spec: { template: { spec: podSpec } },
  };
}

function jobPod(pod: { podName: string; podUid: string }, spec: V1PodSpec = podSpec): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: pod.podName,
      namespace: "agents",
      uid: pod.podUid,
      labels: {
        "batch.kubernetes.io/controller-uid": "job-1",
        "batch.kubernetes.io/job-name": "r",
      },
      ownerReferences: [
        { apiVersion: "batch/v1", kind: "Job", name: "r", uid: "job-1", ...controller },
      ],
    },
    spec,
  };
}

interface HarnessOptions {
  /** The run's status as written (sealed unless `sealed` is false). */
  status?: LangGraphRunStatus;
  sealed?: boolean;
  requester?: boolean;
  access?: RunAccess[];
  policy?: AccessPolicy;
  connections?: AnyConnection[];
  now?: number;
  /** When an http credential stops working (a minted OAuth 2.0 token). */
  httpExpiresAt?: string;
  /** Runs while the upstream credential is made: another writer, or a failure. */
  whileMinting?: (connection: Connection) => void | Promise<void>;
}

interface Harness {
  cluster: FakeCluster;
  issuer: CredentialIssuer;
  clock: { now: number };
  /** upstream.issue calls: `connection:actions until deadline`. */
  minted: string[];
  /** upstream.revoke calls: `run uid:connection`. */
  revoked: string[];
  signed: { claims: RunClaims; options: SignOptions }[];
  /** Pods read from the API server because the cache had not seen them. */
  podReads: string[];
  /** What the API server answers for a pod the cache has not seen. */
  apiPods: Map<string, V1Pod>;
  run(): LangGraphRun;
  setStatus(status: LangGraphRunStatus, options?: { sealed?: boolean }): void;
}

function harness(options: HarnessOptions = {}): Harness {
  const cluster = new FakeCluster();
  const clock = { now: options.now ?? start };
  const minted: string[] = [];
  const revoked: string[] = [];
  const signed: Harness["signed"] = [];
  const podReads: string[] = [];
  const apiPods = new Map<string, V1Pod>();
  const run = testRun({ requester: options.requester === false ? undefined : alice });
  if (options.access) run.spec.access = options.access;
  const status = options.status ?? running;
  run.status = options.sealed === false ? status : sealed(status);
  cluster.runs.put(run);
  cluster.jobs.put(runJob(run));
  cluster.pods.put(jobPod(pods.first));
  cluster.policies.put(options.policy ?? policy());
  cluster.namespaces.put({ metadata: { name: "agents", labels: { team: "ml" } } });
  for (const connection of options.connections ?? [staticPostgres]) {
    if (isClusterConnection(connection)) cluster.clusterConnections.put(connection);
    else cluster.connections.put(connection);
  }

  const identities = new Map(Object.values(pods).map((p) => [p.token, identityOf(p)]));
  const issuer = new CredentialIssuer({
    readPod: async (namespace, name) => {
      podReads.push(`${namespace}/${name}`);
      return apiPods.get(name);
    },
    readJob: async () => undefined,
    status: cluster.status,
    logger: pino({ level: "silent" }),
    events: cluster.eventSink,
    signingKeys: {
      sign: async (claims, signOptions) => {
        signed.push({ claims: claims as unknown as RunClaims, options: signOptions });
        return `run-jwt-${signed.length}`;
      },
    },
    reviewer: {
      review: async (token) => {
        const identity = identities.get(token);
        if (!identity) throw new HttpError(401, "TokenInvalid", "the token was not accepted");
        return identity;
      },
    },
    upstream: {
      issue: async (_run, connection: Connection, claim: GrantClaim, until: Date) => {
        minted.push(`${claim.connection}:${claim.actions.join("+")} until ${metaTime(until)}`);
        await options.whileMinting?.(connection);
        return credentialOf(connection, options.httpExpiresAt);
      },
      revoke: async (of, connection) => {
        revoked.push(`${of.metadata?.uid}:${connection.metadata?.name}`);
      },
    },
    caches: {
      runs: cluster.runs,
      jobs: cluster.jobs,
      pods: cluster.pods,
      policies: cluster.policies,
      connections: cluster.connections,
      clusterConnections: cluster.clusterConnections,
      namespaces: cluster.namespaces,
    },
    seal,
    issuer: issuerUrl,
    tokenTtlMs,
    now: () => clock.now,
  });
  const current = () => {
    const stored = cluster.runs.get("agents", "r");
    assert.ok(stored, "the run exists");
    return stored;
  };
  return {
    cluster,
    issuer,
    clock,
    minted,
    revoked,
    signed,
    podReads,
    apiPods,
    run: current,
    setStatus: (next, { sealed: isSealed = true } = {}) => {
      cluster.runs.put({ ...current(), status: isSealed ? sealed(next) : next });
    },
  };
}

function credentialOf(connection: Connection, httpExpiresAt?: string): UpstreamCredential {
  const { postgres, http } = connection.spec;
  if (postgres) {
    const dynamic = Boolean(postgres.credentials.dynamic);
    return {
      type: "postgres",
      host: postgres.host,
      port: postgres.port,
      database: postgres.database,
      sslMode: postgres.sslMode,
      username: dynamic ? "lgjit_r" : "kb_app",
      password: "secret",
      dynamic,
    };
  }
  return {
    type: "http",
    url: http?.url ?? "",
    headers: { authorization: "Bearer upstream" },
    ...(httpExpiresAt ? { expiresAt: httpExpiresAt } : {}),
  };
}

/** The HttpError issuance was refused with. */
async function refusal(result: Promise<unknown>): Promise<HttpError> {
  const error = await result.then(
    () => assert.fail("a credential was issued"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof HttpError, `not an HttpError: ${String(error)}`);
  return error;
}

function assertNothingIssued(h: Harness): void {
  assert.deepEqual(h.minted, [], "no upstream credential was made");
  assert.deepEqual(h.signed, [], "no run token was signed");
  assert.deepEqual(h.cluster.statusWrites, [], "the run's status was not written");
}

function credentialIssued(run: LangGraphRun) {
  return findCondition(run.status?.conditions, "CredentialIssued");
}

function eventReasons(h: Harness): string[] {
  return h.cluster.events.map((e) => `${e.type} ${e.reason} ${e.kind}/${e.name}`);
}

describe("CredentialIssuer: the pod", () => {
  it("refuses a token the API server does not vouch for, with the reviewer's answer", async () => {
    const h = harness();
    const error = await refusal(h.issuer.issue("stolen"));
    assert.deepEqual([error.status, error.reason], [401, "TokenInvalid"]);
    assertNothingIssued(h);
  });

  it("refuses a pod no Job controls, telling the pod in an Event", async () => {
    const h = harness();
    const orphan = jobPod(pods.first);
    orphan.metadata = { ...orphan.metadata, ownerReferences: [] };
    h.cluster.pods.put(orphan);
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [403, "NotARunPod"]);
    assert.equal(error.message, "pod agents/r-abcde is not owned by a Job");
    assertNothingIssued(h);
    assert.deepEqual(eventReasons(h), ["Warning CredentialRefused Pod/r-abcde"]);
  });

  it("refuses a pod that claims the run's Job but is not made from its template", async () => {
    const h = harness();
    h.cluster.pods.put(
      jobPod(pods.first, { ...podSpec, containers: [{ name: "graph", image: "evil" }] }),
    );
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [403, "NotARunPod"]);
    assert.match(error.message, /is not the pod of Job r: containers has 1 containers/);
    assertNothingIssued(h);
    assert.deepEqual(eventReasons(h), ["Warning CredentialRefused Pod/r-abcde"]);
  });

  it("asks the API server for a pod the cache has not seen, and refuses it when it is gone", async () => {
    const h = harness();
    const error = await refusal(h.issuer.issue(pods.retry.token));
    assert.deepEqual([error.status, error.reason], [403, "PodNotFound"]);
    assert.deepEqual(h.podReads, ["agents/r-fghij"]);
    assertNothingIssued(h);

    h.apiPods.set("r-fghij", jobPod(pods.retry));
    await h.issuer.issue(pods.retry.token);
    assert.equal(h.signed[0]?.claims.pod.uid, "pod-2");
  });

  it("refuses a pod recreated under the token's pod name", async () => {
    const h = harness();
    const replacement = jobPod({ podName: "r-abcde", podUid: "pod-9" });
    h.cluster.pods.put(replacement);
    h.apiPods.set("r-abcde", replacement);
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [403, "PodNotFound"]);
    assert.equal(error.message, "pod agents/r-abcde was replaced (uid pod-9, token for pod-1)");
    assertNothingIssued(h);
  });

  it("reads the token's pod from the API server while the cache holds another of its name", async () => {
    const h = harness();
    h.cluster.pods.put(jobPod({ podName: "r-abcde", podUid: "pod-0" }));
    h.apiPods.set("r-abcde", jobPod(pods.first));
    await h.issuer.issue(pods.first.token);
    assert.deepEqual(h.podReads, ["agents/r-abcde"]);
    assert.equal(h.signed[0]?.claims.pod.uid, "pod-1");
  });
});

describe("CredentialIssuer: the run", () => {
  const refused: {
    name: string;
    status: LangGraphRunStatus;
    sealed?: boolean;
    now?: number;
    answer: [number, string];
    message: RegExp;
  }[] = [
    {
      name: "a Pending run",
      status: { phase: "Pending" },
      answer: [403, "RunNotRunning"],
      message: /^LangGraphRun agents\/r has not started \(phase Pending\)$/,
    },
    {
      name: "a run awaiting approval",
      status: { phase: "AwaitingApproval" },
      answer: [403, "RunNotRunning"],
      message: /has not started \(phase AwaitingApproval\)$/,
    },
    {
      name: "a Succeeded run",
      status: { ...running, phase: "Succeeded" },
      answer: [403, "RunNotRunning"],
      message: /has finished \(phase Succeeded\)$/,
    },
    {
      name: "a Running run whose credentials were revoked",
      status: { ...running, credential: { revokedAt: startedAt } },
      answer: [401, "Revoked"],
      message: /has ended and its credentials are revoked$/,
    },
    {
      name: "a Running run past its deadline",
      status: running,
      now: deadlineMs,
      answer: [403, "DeadlineExceeded"],
      message: /is past its deadline$/,
    },
    {
      name: "a Running status without the operator's seal",
      status: running,
      sealed: false,
      answer: [403, "StatusNotSealed"],
      message: /is in phase Running, which langgraph-jit did not set$/,
    },
    {
      name: "a Running status whose deadline was moved after the operator sealed it",
      status: { ...sealed(running), deadline: "2026-12-06T10:30:00Z" },
      sealed: false,
      now: deadlineMs + 1,
      answer: [403, "StatusNotSealed"],
      message: /which langgraph-jit did not set$/,
    },
  ];
  for (const c of refused) {
    it(`refuses ${c.name}: ${c.answer.join(" ")}, minting nothing`, async () => {
      const h = harness({
        status: c.status,
        ...(c.sealed === false ? { sealed: false } : {}),
        ...(c.now ? { now: c.now } : {}),
      });
      const error = await refusal(h.issuer.issue(pods.first.token));
      assert.deepEqual([error.status, error.reason], c.answer);
      assert.match(error.message, c.message);
      assertNothingIssued(h);
      assert.deepEqual(eventReasons(h), ["Warning CredentialRefused LangGraphRun/r"]);
    });
  }

  it("refuses a run being deleted: 401 Revoked", async () => {
    const h = harness();
    h.cluster.runs.put({
      ...h.run(),
      metadata: { ...h.run().metadata, deletionTimestamp: new Date(start) },
    });
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [401, "Revoked"]);
    assertNothingIssued(h);
  });
});

describe("CredentialIssuer: the grant is evaluated again at every issuance", () => {
  it("refuses with AccessRevoked once the AccessPolicy is deleted", async () => {
    const h = harness();
    await h.issuer.issue(pods.first.token);
    assert.equal(h.minted.length, 1);
    h.cluster.policies.remove(policy());
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [403, "AccessRevoked"]);
    assert.match(error.message, /^the run's grant no longer holds: .*alice@example\.com/);
    assert.equal(h.minted.length, 1, "nothing more was minted");
    assert.equal(h.signed.length, 1, "no second token was signed");
  });

  it("issues on a ClusterConnection offered to the namespace, and refuses once it is not", async () => {
    const h = harness({
      connections: [clusterConnection(postgresConnection(), { matchLabels: { team: "ml" } })],
    });
    await h.issuer.issue(pods.first.token);
    assert.equal(h.minted.length, 1);
    h.cluster.namespaces.put({ metadata: { name: "agents", labels: {} } });
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [403, "AccessRevoked"]);
    assert.match(error.message, /nor a ClusterConnection offered to it/);
    assert.equal(h.minted.length, 1, "nothing more was minted");
  });

  it("refuses with AccessRevoked once the policy's subjects no longer include the requester", async () => {
    const h = harness();
    await h.issuer.issue(pods.first.token);
    h.cluster.policies.put(policy({ subjects: [{ kind: "Group", name: "data-eng" }] }));
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [403, "AccessRevoked"]);
    assert.equal(h.minted.length, 1);
    assert.equal(h.signed.length, 1);
  });

  it("refuses with AccessRevoked once the grant no longer covers an action the run holds", async () => {
    const h = harness({
      connections: [staticPostgres, kbApi],
      access: [{ connection: "kb-api", actions: ["read", "write"] }],
      policy: policy({ grants: [{ connection: "kb-api", actions: ["read", "write"] }] }),
    });
    await h.issuer.issue(pods.first.token);
    h.cluster.policies.put(policy({ grants: [{ connection: "kb-api", actions: ["read"] }] }));
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [403, "AccessRevoked"]);
    assert.match(error.message, /"write" on connection "kb-api"/);
    assert.equal(h.minted.length, 1);
  });

  it("refuses a run without a stamped requester", async () => {
    const h = harness({ requester: false });
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [403, "AccessRevoked"]);
    assert.equal(error.message, "the run has no valid requester");
    assertNothingIssued(h);
  });
});

describe("CredentialIssuer: the bundle", () => {
  const kbApiGrant = {
    connection: "kb-api",
    actions: ["read" as const, "write" as const],
    http: { rules: [{ methods: ["GET" as const, "POST" as const], paths: ["/v1/**"] }] },
    masking: { detectors: ["email" as const], unmaskable: "Deny" as const },
  };

  function twoConnections(options: HarnessOptions = {}): Harness {
    return harness({
      connections: [staticPostgres, kbApi],
      access: [
        { connection: "kb-postgres", actions: ["read"] },
        { connection: "kb-api", actions: ["read", "write"] },
      ],
      policy: policy({
        grants: [{ connection: "kb-postgres", actions: ["read", "write"] }, kbApiGrant],
      }),
      ...options,
    });
  }

  it("binds the token to the run and the pod, with one grant per connection and its actions", async () => {
    const h = twoConnections();
    const bundle = await h.issuer.issue(pods.first.token);
    assert.equal(h.signed.length, 1);
    const [{ claims, options } = assert.fail("nothing signed")] = h.signed;
    assert.deepEqual(claims, {
      run: { namespace: "agents", name: "r", uid: "uid-r", deadline },
      pod: { name: "r-abcde", uid: "pod-1" },
      grants: [
        { connection: "kb-postgres", type: "postgres", actions: ["read"] },
        {
          connection: "kb-api",
          type: "http",
          actions: ["read", "write"],
          http: kbApiGrant.http,
          masking: kbApiGrant.masking,
        },
      ],
    });
    assert.equal(options.issuer, issuerUrl);
    assert.equal(options.audience, runTokenAudience);
    assert.equal(options.subject, "uid-r");
    assert.match(options.jti, /^[0-9a-f-]{36}$/);
    assert.deepEqual(h.minted.toSorted(), [
      "kb-api:read+write until 2026-12-05T10:30:00Z",
      "kb-postgres:read until 2026-12-05T10:30:00Z",
    ]);
    assert.equal(bundle.token, "run-jwt-1");
    assert.deepEqual(Object.keys(bundle.credentials).toSorted(), ["kb-api", "kb-postgres"]);
    assert.equal(bundle.credentials["kb-postgres"]?.type, "postgres");
  });

  it("expires the token after tokenTtlMs while the deadline is further", async () => {
    const h = twoConnections();
    const bundle = await h.issuer.issue(pods.first.token);
    assert.equal(h.signed[0]?.options.expiresAt.getTime(), start + tokenTtlMs);
    assert.equal(bundle.expiresAt, "2026-12-05T10:10:00Z");
  });

  it("expires the token at the deadline when it comes first", async () => {
    const now = deadlineMs - 5 * 60_000 - 250;
    const h = twoConnections({ now });
    const bundle = await h.issuer.issue(pods.first.token);
    assert.equal(h.signed[0]?.options.expiresAt.getTime(), deadlineMs);
    assert.equal(bundle.expiresAt, deadline);
  });

  it("says the bundle expires with an upstream credential that expires first", async () => {
    const h = twoConnections({ httpExpiresAt: "2026-12-05T10:04:00Z" });
    const bundle = await h.issuer.issue(pods.first.token);
    assert.equal(bundle.expiresAt, "2026-12-05T10:04:00Z");
    assert.equal(h.signed[0]?.options.expiresAt.getTime(), start + tokenTtlMs);
  });

  it("refuses a deadline less than a second away: DeadlineExceeded, minting nothing", async () => {
    const h = twoConnections({ now: deadlineMs - 999 });
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [403, "DeadlineExceeded"]);
    assert.equal(error.message, "LangGraphRun agents/r reaches its deadline now");
    assertNothingIssued(h);

    h.clock.now = deadlineMs - 1_000;
    await h.issuer.issue(pods.first.token);
    assert.equal(h.signed[0]?.options.expiresAt.getTime(), deadlineMs, "a second is enough");
  });

  it("answers 503 CredentialUnavailable when an upstream credential cannot be made, signing nothing", async () => {
    const h = twoConnections({
      whileMinting: (connection) => {
        if (connection.metadata?.name === "kb-api") throw new Error("connect ECONNREFUSED");
      },
    });
    const error = await refusal(h.issuer.issue(pods.first.token));
    assert.deepEqual([error.status, error.reason], [503, "CredentialUnavailable"]);
    assert.equal(error.message, "connect ECONNREFUSED");
    assert.deepEqual(h.signed, []);
    assert.deepEqual(h.cluster.statusWrites, []);
    assert.deepEqual(eventReasons(h), ["Warning CredentialRefused LangGraphRun/r"]);
  });
});

describe("CredentialIssuer: status and Events", () => {
  it("records the first issuance: CredentialIssued, the credential's times and an Event", async () => {
    const h = harness();
    const bundle = await h.issuer.issue(pods.first.token);
    assert.equal(h.cluster.statusWrites.length, 1);
    const run = h.run();
    assert.deepEqual(run.status?.credential, {
      issuedAt: startedAt,
      expiresAt: "2026-12-05T10:10:00Z",
    });
    assert.equal(bundle.expiresAt, run.status?.credential?.expiresAt);
    const condition = credentialIssued(run);
    assert.equal(condition?.status, "True");
    assert.equal(condition?.reason, "Issued");
    assert.equal(condition?.message, "issued to pod r-abcde");
    assert.equal(condition?.observedGeneration, 1);
    assert.equal(run.status?.phase, "Running");
    assert.ok(seal.statusIsTrusted(run), "the status keeps the operator's seal");
    assert.deepEqual(eventReasons(h), ["Normal CredentialIssued LangGraphRun/r"]);
    assert.equal(
      h.cluster.events[0]?.note,
      "issued to pod r-abcde, expires at 2026-12-05T10:10:00Z",
    );
  });

  it("writes nothing for a refresh to the same pod whose expiry moved less than a minute", async () => {
    const h = harness();
    await h.issuer.issue(pods.first.token);
    await h.issuer.issue(pods.first.token);
    h.clock.now += 59_000;
    await h.issuer.issue(pods.first.token);
    assert.equal(h.signed.length, 3, "each refresh gets a token");
    assert.equal(h.cluster.statusWrites.length, 1);
    assert.equal(h.cluster.events.length, 1);
  });

  it("writes again when the expiry moves a minute or another pod of the run holds it", async () => {
    const h = harness();
    await h.issuer.issue(pods.first.token);
    h.clock.now += 60_000;
    await h.issuer.issue(pods.first.token);
    assert.equal(h.cluster.statusWrites.length, 2);
    assert.equal(h.run().status?.credential?.expiresAt, "2026-12-05T10:11:00Z");

    h.cluster.pods.put(jobPod(pods.retry));
    await h.issuer.issue(pods.retry.token);
    assert.equal(h.cluster.statusWrites.length, 3);
    assert.equal(credentialIssued(h.run())?.message, "issued to pod r-fghij");
  });

  it("records every issuance that minted, so its write checks the run still holds it", async () => {
    const h = harness({ connections: [dynamicPostgres] });
    await h.issuer.issue(pods.first.token);
    await h.issuer.issue(pods.first.token);
    assert.equal(h.minted.length, 2);
    assert.equal(h.cluster.statusWrites.length, 2);
  });

  it("retries a conflicting status write on the run as it now stands", async () => {
    const h = harness({
      connections: [dynamicPostgres],
      whileMinting: async () => {
        // The session ingest counts events meanwhile: the issuer's copy of the run is stale.
        await h.cluster.status.writeSession(
          { namespace: "agents", name: "r", uid: "uid-r" },
          { events: 3 },
        );
      },
    });
    const bundle = await h.issuer.issue(pods.first.token);
    assert.equal(bundle.token, "run-jwt-1");
    assert.equal(h.cluster.statusWrites.length, 1);
    const run = h.run();
    assert.deepEqual(run.status?.session, { events: 3 }, "the other writer's change is kept");
    assert.equal(credentialIssued(run)?.status, "True");
    assert.deepEqual(h.revoked, []);
  });

  it("retries a status write the API server refused once with a conflict", async () => {
    const h = harness();
    h.cluster.failNext.set("write", apiError(409, "the object has been modified"));
    await h.issuer.issue(pods.first.token);
    assert.equal(h.cluster.statusWrites.length, 1);
  });

  const endings: {
    name: string;
    end: (h: Harness) => void;
    answer: [number, string];
  }[] = [
    {
      name: "finished",
      end: (h) => h.setStatus({ ...running, phase: "Succeeded", completedAt: startedAt }),
      answer: [403, "RunNotRunning"],
    },
    {
      name: "had its credentials revoked",
      end: (h) => h.setStatus({ ...running, credential: { revokedAt: startedAt } }),
      answer: [401, "Revoked"],
    },
    {
      name: "was deleted",
      end: (h) =>
        h.cluster.runs.put({
          ...h.run(),
          metadata: { ...h.run().metadata, deletionTimestamp: new Date(start) },
        }),
      answer: [401, "Revoked"],
    },
    {
      name: "vanished (its status write finds no run)",
      end: (h) => h.cluster.runs.remove(h.run()),
      answer: [403, "RunNotFound"],
    },
    {
      name: "was replaced by a run of the same name",
      end: (h) => {
        const old = h.run();
        h.cluster.runs.remove(old);
        h.cluster.runs.put({ ...old, metadata: { ...old.metadata, uid: "uid-r2" } });
      },
      answer: [403, "RunNotFound"],
    },
  ];
  for (const ending of endings) {
    it(`revokes what it minted for a run that ${ending.name} meanwhile, and refuses`, async () => {
      const h: Harness = harness({
        connections: [dynamicPostgres],
        whileMinting: () => ending.end(h),
      });
      const error = await refusal(h.issuer.issue(pods.first.token));
      assert.deepEqual([error.status, error.reason], ending.answer);
      assert.deepEqual(h.minted, ["kb-postgres:read until 2026-12-05T10:30:00Z"]);
      assert.deepEqual(h.revoked, ["uid-r:kb-postgres"]);
      assert.deepEqual(h.cluster.statusWrites, [], "no status claims a credential");
      assert.deepEqual(eventReasons(h), ["Warning CredentialRefused LangGraphRun/r"]);
    });
  }

  it("records a Connection a person must fix on the run, once", async () => {
    const h = harness({
      whileMinting: () => {
        throw new HttpError(424, "CredentialMisconfigured", 'connection "kb-postgres": no key');
      },
    });
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = await refusal(h.issuer.issue(pods.first.token));
      assert.deepEqual([error.status, error.reason], [424, "CredentialMisconfigured"]);
    }
    assert.equal(h.cluster.statusWrites.length, 1);
    const condition = credentialIssued(h.run());
    assert.equal(condition?.status, "False");
    assert.equal(condition?.reason, "CredentialMisconfigured");
    assert.deepEqual(h.signed, []);
  });

  it("tells of a refusal in one Event per pod and reason a minute", async () => {
    const h = harness({ status: { phase: "Pending" } });
    const refusals = async (times: number) => {
      for (let i = 0; i < times; i++) await refusal(h.issuer.issue(pods.first.token));
    };
    await refusals(3);
    assert.equal(h.cluster.events.length, 1);
    h.clock.now += 59_999;
    await refusals(2);
    assert.equal(h.cluster.events.length, 1, "the same refusal within the minute is not retold");

    h.cluster.pods.put(jobPod(pods.retry));
    await refusal(h.issuer.issue(pods.retry.token));
    assert.equal(h.cluster.events.length, 2, "another pod is told at once");

    h.setStatus({ ...running, credential: { revokedAt: startedAt } });
    await refusals(1);
    assert.equal(h.cluster.events.length, 3, "another reason is told at once");
    assert.match(h.cluster.events[2]?.note ?? "", /its credentials are revoked/);

    h.setStatus({ phase: "Pending" });
    h.clock.now += 1;
    await refusals(1);
    assert.equal(h.cluster.events.length, 4, "a minute later the refusal is told again");
    assert.deepEqual(
      new Set(h.cluster.events.map((e) => `${e.type} ${e.reason}`)),
      new Set(["Warning CredentialRefused"]),
    );
  });
});
