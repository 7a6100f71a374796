// The product as users install it: `helm install` of the chart with the locally built images,
// then real runs on the real node: the native sidecar starts first and fetches its credential
// from the in-cluster operator over its Service, the example LangGraph graph runs and exits, and
// the run ends Succeeded (or Expired) with its credential revoked, even across a leader change.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  ApiregistrationV1Api,
  AppsV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  RbacAuthorizationV1Api,
  type V1Pod,
} from "@kubernetes/client-node";
import { type RunSession, sessionsApi, sessionsApiVersion } from "../../api/session-events.ts";
import type { LangGraphRun } from "../../api/v1alpha1.ts";
import {
  clusterDir,
  createTestNamespace,
  eventually,
  kubeConfigFor,
  kubectlJit,
  statusOf,
  type TestNamespace,
} from "../lib/cluster.ts";
import { installChart, localImages, uninstallChart } from "../lib/helm.ts";
import { type KbApi, startKbApi } from "../lib/kb-api.ts";
import { type KbDb, startKbDb } from "../lib/kb-db.ts";
import { startOperator } from "../lib/operator.ts";
import { type PostgresServer, startPostgres, testNode } from "../lib/postgres.ts";
import {
  createObject,
  createRun,
  customObjects,
  deleteRun,
  graphSummary,
  readRun,
  runManifest,
  setUpBearerApiNamespace,
  setUpRunNamespace,
  waitForPhase,
} from "../lib/runs.ts";

const release = "lgjit";
const fullName = "lgjit-langgraph-jit";
const admin = kubeConfigFor("admin");
const core = admin.makeApiClient(CoreV1Api);
const leases = admin.makeApiClient(CoordinationV1Api);

/** A run of the example graph, kept busy in its `work` step for workSeconds. */
function graphRun(name: string, workSeconds: number, maxDuration = "5m"): LangGraphRun {
  return runManifest(name, {
    access: [{ connection: "kb-api", actions: ["read"] }],
    maxDuration,
    template: {
      spec: {
        containers: [
          {
            name: "graph",
            image: localImages.graph,
            imagePullPolicy: "Never",
            env: [{ name: "GRAPH_WORK_SECONDS", value: String(workSeconds) }],
          },
        ],
      },
    },
  });
}

/** Replaces the e2e suites' "approvers" binding with the chart's ClusterRoles, bound to these users. */
async function bindChartRoles(namespace: string, roles: [string, string[]][]): Promise<void> {
  const rbacApi = admin.makeApiClient(RbacAuthorizationV1Api);
  await rbacApi.deleteNamespacedRoleBinding({ namespace, name: "approvers" });
  for (const [role, users] of roles) {
    await rbacApi.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: `chart-${role}` },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: `${fullName}-${role}`,
        },
        subjects: users.map((name) => ({
          apiGroup: "rbac.authorization.k8s.io",
          kind: "User",
          name,
        })),
      },
    });
  }
}

/** The held command waiting for bob now, as `kubectl jit approvals -o json` shows it. */
function nextHeldCommand(namespace: string, seen: string[]) {
  return eventually(
    "a command held for bob",
    async () => {
      const listed = kubectlJit("bob", "approvals", "-n", namespace, "-o", "json");
      const waiting = JSON.parse(listed.stdout || "[]") as {
        kind: string;
        name: string;
        request: string;
      }[];
      return waiting.find((w) => w.kind === "command" && !seen.includes(w.name));
    },
    90_000,
  );
}

function containerStatus(pod: V1Pod, name: string) {
  const all = [
    ...(pod.status?.initContainerStatuses ?? []),
    ...(pod.status?.containerStatuses ?? []),
  ];
  const status = all.find((s) => s.name === name);
  assert.ok(status, `pod ${pod.metadata?.name} has no status for container ${name}`);
  return status;
}

/** The run's pod, found by its Job's label while the pod still exists. */
async function podOf(namespace: string, run: string): Promise<V1Pod> {
  return eventually(`the pod of run ${run}`, async () => {
    const pods = await core.listNamespacedPod({
      namespace,
      labelSelector: `langgraph-jit.dev/run=${run}`,
    });
    return pods.items[0];
  });
}

async function revoked(namespace: string, name: string): Promise<LangGraphRun> {
  return eventually(
    `run ${name}'s credential to be revoked`,
    async () => {
      const run = await readRun(namespace, name);
      return run?.status?.credential?.revokedAt ? run : undefined;
    },
    30_000,
  );
}

/** A GET straight to an operator pod's HTTPS port, past the API server, with the given TLS client. */
function straightToOperator(
  podIp: string,
  servername: string,
  caPem: string,
  path: string,
  client: { cert?: string; key?: string; headers?: Record<string, string | string[]> },
): Promise<{ status: number; body: { reason?: string; message?: string } & Partial<RunSession> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: podIp,
        port: 8443,
        path,
        servername,
        ca: caPem,
        ...(client.cert ? { cert: client.cert, key: client.key } : {}),
        headers: client.headers ?? {},
      },
      (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          text += chunk;
        });
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function leaseHolder(namespace: string): Promise<string> {
  return eventually("the Lease to have a holder", async () => {
    const lease = await leases.readNamespacedLease({ name: fullName, namespace });
    return lease.spec?.holderIdentity || undefined;
  });
}

describe("the operator installed with helm, on the real node", () => {
  let system: TestNamespace;
  let agents: TestNamespace;
  let sessions: PostgresServer;
  // The KB API test's namespace and API, kept for the session API tests after it.
  let kb: TestNamespace | undefined;
  let kbApi: KbApi | undefined;
  let kbDb: KbDb | undefined;

  before(async () => {
    system = await createTestNamespace("lgjit-system");
    agents = await createTestNamespace("agents");
    // Two replicas share one session store: a PostgreSQL the pods reach on the node's address.
    sessions = await startPostgres({ nodeAccess: true });
    await core.createNamespacedSecret({
      namespace: system.name,
      body: {
        metadata: { name: "session-store" },
        stringData: { url: sessions.url(undefined, undefined, undefined, testNode.address) },
      },
    });
    installChart(release, system.name, [
      "replicaCount=2,sessionStore.postgresSecret.name=session-store,sessionStore.postgresSecret.key=url",
    ]);
    await setUpBearerApiNamespace(agents.name, "kb-api-bearer");
  });

  after(async () => {
    await kbApi?.stop();
    await kbDb?.stop();
    await kb?.remove(120_000);
    await agents?.remove(120_000);
    if (system) uninstallChart(release, system.name);
    await system?.remove(120_000);
    await sessions?.stop();
  });

  it("brings up both replicas Ready, one of them holding the Lease", async () => {
    const deployment = await admin
      .makeApiClient(AppsV1Api)
      .readNamespacedDeployment({ name: fullName, namespace: system.name });
    assert.equal(deployment.status?.readyReplicas, 2);
    const holder = await leaseHolder(system.name);
    const pods = await core.listNamespacedPod({
      namespace: system.name,
      labelSelector: `app.kubernetes.io/instance=${release}`,
    });
    const names = pods.items.map((pod) => pod.metadata?.name);
    assert.equal(names.length, 2);
    assert.ok(names.includes(holder), `the Lease holder ${holder} is none of ${names.join(", ")}`);
  });

  it("runs alice's graph after its sidecar is ready, to Succeeded, then revokes the credential", async () => {
    await createRun("alice", agents.name, graphRun("kb-refresh", 3));
    const pod = await podOf(agents.name, "kb-refresh");
    const run = await waitForPhase(agents.name, "kb-refresh", "Succeeded", 120_000);
    assert.ok(run.status?.credential?.issuedAt, "the sidecar never received its credential");

    const finished = await core.readNamespacedPod({
      namespace: agents.name,
      name: pod.metadata?.name ?? "",
    });
    assert.equal(finished.status?.phase, "Succeeded");
    const sidecar = containerStatus(finished, "langgraph-jit-sidecar");
    const graph = containerStatus(finished, "graph");
    assert.equal(graph.state?.terminated?.exitCode, 0);
    // The native sidecar started, and passed its startup probe (a credential in hand), first.
    assert.ok(sidecar.state?.terminated, "the sidecar did not stop after the graph");
    const sidecarStarted = new Date(sidecar.state.terminated.startedAt ?? 0).getTime();
    const graphStarted = new Date(graph.state?.terminated?.startedAt ?? 0).getTime();
    assert.ok(sidecarStarted <= graphStarted, "the graph started before its sidecar");
    const issued = new Date(run.status?.credential?.issuedAt ?? 0).getTime();
    assert.ok(issued <= graphStarted + 1_000, "the graph started before the credential was issued");

    const output = await core.readNamespacedPodLog({
      namespace: agents.name,
      name: finished.metadata?.name ?? "",
      container: "graph",
    });
    const summary = graphSummary(output);
    assert.equal(summary.ok, true, output);
    assert.deepEqual(summary.connections, [{ name: "kb-api", url: "http://127.0.0.1:15432" }]);

    const job = await admin
      .makeApiClient(BatchV1Api)
      .readNamespacedJob({ namespace: agents.name, name: run.status?.jobName ?? "" });
    assert.ok(job.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True"));
    await revoked(agents.name, "kb-refresh");
  });

  it("ends a graph that outlives its maxDuration Expired, its pod killed, its credential revoked", async () => {
    await createRun("alice", agents.name, graphRun("too-long", 600, "20s"));
    const pod = await podOf(agents.name, "too-long");
    await waitForPhase(agents.name, "too-long", "Running", 60_000);
    await waitForPhase(agents.name, "too-long", "Expired", 90_000);
    await revoked(agents.name, "too-long");
    await eventually(
      "the graph to be killed",
      async () => {
        try {
          const current = await core.readNamespacedPod({
            namespace: agents.name,
            name: pod.metadata?.name ?? "",
          });
          const graph = current.status?.containerStatuses?.find((s) => s.name === "graph");
          return graph?.state?.terminated || current.status?.phase === "Failed";
        } catch (error) {
          return statusOf(error) === 404;
        }
      },
      60_000,
    );
  });

  it("completes and revokes a run across the loss of the leader", async () => {
    await createRun("alice", agents.name, graphRun("through-failover", 15));
    await waitForPhase(agents.name, "through-failover", "Running", 60_000);
    const leader = await leaseHolder(system.name);
    await core.deleteNamespacedPod({ namespace: system.name, name: leader });
    const next = await eventually(
      "another replica to take the Lease",
      async () => {
        const holder = await leaseHolder(system.name);
        return holder !== leader ? holder : undefined;
      },
      60_000,
    );
    assert.notEqual(next, leader);
    await waitForPhase(agents.name, "through-failover", "Succeeded", 120_000);
    await revoked(agents.name, "through-failover");
  });

  it("runs a graph that reads the KB API through its sidecar: masked, a write refused, both recorded", async () => {
    const ns = await createTestNamespace("kb");
    kb = ns;
    await setUpRunNamespace(
      ns.name,
      {
        grants: [
          {
            connection: "kb-api",
            actions: ["read"],
            http: { rules: [{ methods: ["GET"], paths: ["/v1/docs/**"] }] },
            masking: {
              jsonPaths: ["$.items[*].author_email"],
              detectors: ["credit-card"],
              unmaskable: "Deny",
            },
          },
        ],
      },
      [],
    );
    // After the namespace, which made Service kb-api: the API goes behind that Service.
    const api = await startKbApi(ns.name);
    kbApi = api;
    await createObject("admin", ns.name, "connections", api.connection);
    const run = graphRun("kb-reader", 0);
    const graph = run.spec.template?.spec?.containers[0];
    graph?.env?.push({ name: "GRAPH_CALLS", value: "GET /v1/docs, POST /v1/docs" });
    await createRun("alice", ns.name, run);
    const pod = await podOf(ns.name, "kb-reader");
    await waitForPhase(ns.name, "kb-reader", "Succeeded", 120_000);

    const output = await core.readNamespacedPodLog({
      namespace: ns.name,
      name: pod.metadata?.name ?? "",
      container: "graph",
    });
    const summary = graphSummary(output);
    assert.equal(summary.ok, true, output);
    assert.deepEqual(summary.calls, [
      {
        connection: "kb-api",
        method: "GET",
        path: "/v1/docs",
        status: 200,
        body: {
          items: [
            {
              id: 1,
              title: "Rotating keys",
              author_email: "[MASKED:json-path]",
              note: "paid with [MASKED:credit-card]",
            },
            {
              id: 2,
              title: "Run budgets",
              author_email: "[MASKED:json-path]",
              note: "no payment",
            },
          ],
        },
      },
      {
        connection: "kb-api",
        method: "POST",
        path: "/v1/docs",
        status: 403,
        reason: "ActionNotGranted",
      },
    ]);
    // The upstream saw the read only, with the connection's token the graph never had.
    assert.deepEqual(api.requests, [
      { method: "GET", path: "/v1/docs", authorization: `Bearer ${api.token}` },
    ]);
    assert.ok(!output.includes(api.token));

    const session = await eventually(
      "the run's session counts",
      async () => {
        const current = await readRun(ns.name, "kb-reader");
        return current?.status?.session?.events === 2 ? current.status.session : undefined;
      },
      30_000,
    );
    assert.deepEqual(session, { events: 2, denied: 1, masked: 1 });
  });

  it("holds alice's write to the KB API until bob approves that one write; the next is held again and, denied, reaches nothing", async () => {
    const ns = await createTestNamespace("held");
    const security = [{ kind: "Group" as const, name: "security" }];
    await setUpRunNamespace(
      ns.name,
      {
        grants: [
          {
            connection: "kb-api",
            actions: ["read", "write"],
            approval: { actions: ["write"], approvers: security, approvals: 1, timeout: "5m" },
          },
        ],
      },
      [],
    );
    // Approvers decide with the chart's approver role alone; the webhook still refuses alice's own.
    await bindChartRoles(ns.name, [["approver", ["alice@example.com", "bob@example.com"]]]);
    const api = await startKbApi(ns.name);
    try {
      await createObject("admin", ns.name, "connections", api.connection);
      const run = graphRun("kb-writer", 0);
      run.spec.access = [{ connection: "kb-api", actions: ["read", "write"] }];
      run.spec.template?.spec?.containers[0]?.env?.push({
        name: "GRAPH_CALLS",
        value: "POST /v1/docs, POST /v1/docs",
      });
      await createRun("alice", ns.name, run);
      const posts = () => api.requests.filter((r) => r.method === "POST").length;
      const nextHeld = (seen: string[]) => nextHeldCommand(ns.name, seen);

      const first = await nextHeld([]);
      assert.match(
        first.request,
        /^kb-api: POST \/v1\/docs \(body sha256 [0-9a-f]{12}…, \d+ bytes\)$/,
      );
      assert.equal(posts(), 0, "nothing reaches the API while it is held");
      const own = kubectlJit("alice", "approve", first.name, "-n", ns.name, "--reason", "mine");
      assert.equal(own.status, 1);
      assert.match(own.stderr, /alice@example.com requested the run and may not decide/);
      const approved = kubectlJit(
        "bob",
        "approve",
        first.name,
        "-n",
        ns.name,
        "--reason",
        "ok to add",
      );
      assert.equal(approved.status, 0, approved.stderr);
      assert.match(
        approved.stdout,
        new RegExp(
          `created: Approve HeldCommand ${ns.name}/${first.name} \\(kb-api: POST /v1/docs\\)`,
        ),
      );
      await eventually("the approved write to reach the API", async () => posts() === 1, 30_000);

      const second = await nextHeld([first.name]);
      assert.notEqual(second.name, first.name, "approving one write approved no later one");
      const denied = kubectlJit(
        "bob",
        "deny",
        second.name,
        "-n",
        ns.name,
        "--reason",
        "one is enough",
      );
      assert.equal(denied.status, 0, denied.stderr);
      await waitForPhase(ns.name, "kb-writer", "Succeeded", 90_000);
      assert.equal(posts(), 1, "the denied write reached nothing");
      assert.ok(api.requests.every((r) => r.authorization === `Bearer ${api.token}`));

      const pod = await podOf(ns.name, "kb-writer");
      const output = await core.readNamespacedPodLog({
        namespace: ns.name,
        name: pod.metadata?.name ?? "",
        container: "graph",
      });
      assert.match(output, /call POST kb-api\/v1\/docs: 201/);
      assert.match(output, /call POST kb-api\/v1\/docs: 403 \(ApprovalDenied\)/);
      const held = (await customObjects().listNamespacedCustomObject({
        group: "langgraph-jit.dev",
        version: "v1alpha1",
        namespace: ns.name,
        plural: "heldcommands",
      })) as { items: { metadata: { name: string }; status?: { phase?: string } }[] };
      const phases = Object.fromEntries(held.items.map((c) => [c.metadata.name, c.status?.phase]));
      await eventually("both held commands' status to be written", async () => {
        const again = (await customObjects().listNamespacedCustomObject({
          group: "langgraph-jit.dev",
          version: "v1alpha1",
          namespace: ns.name,
          plural: "heldcommands",
        })) as typeof held;
        const now = Object.fromEntries(again.items.map((c) => [c.metadata.name, c.status?.phase]));
        return now[first.name] === "Approved" && now[second.name] === "Denied" ? now : undefined;
      });
      assert.equal(Object.keys(phases).length, 2);
    } finally {
      await api.stop();
      await ns.remove(120_000);
    }
  });

  it("shows the run's session to alice with `kubectl jit logs`, and to nobody the cluster does not allow", async () => {
    assert.ok(kb, "the KB API test made the namespace");
    await admin.makeApiClient(RbacAuthorizationV1Api).createNamespacedRoleBinding({
      namespace: kb.name,
      body: {
        metadata: { name: "session-readers" },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: `${fullName}-session-reader`,
        },
        subjects: [
          { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "alice@example.com" },
          { apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "oidc:ml-platform" },
        ],
      },
    });
    // The APIService turns Available once the operator gave it its CA and answered discovery.
    const text = await eventually(
      "kubectl jit logs to answer",
      async () => {
        const result = kubectlJit("alice", "logs", "kb-reader", "-n", kb?.name ?? "");
        return result.status === 0 ? result.stdout : undefined;
      },
      60_000,
    );
    const lines = text.trimEnd().split("\n");
    assert.match(
      lines[0] ?? "",
      /^Run kb-\S+\/kb-reader \(uid [0-9a-f-]{36}, Succeeded\): 2 events, 1 denied, 1 masked$/,
    );
    assert.match(
      lines[2] ?? "",
      /\s1\s+kb-api\s+masked\s+GET \/v1\/docs\s+200\s.*masked json-path×2 credit-card×1$/,
    );
    assert.match(
      lines[3] ?? "",
      /\s2\s+kb-api\s+denied\s+POST \/v1\/docs\s+403\s.*ActionNotGranted$/,
    );
    assert.doesNotMatch(text, /@example\.com|4111|Bearer/, "a masked or secret value in the log");

    const json = kubectlJit("alice", "logs", "kb-reader", "-n", kb.name, "-o", "json");
    assert.equal(json.status, 0, json.stderr);
    // A page per event reads the same as one page: the plugin follows `continue` to the end.
    for (const format of ["text", "json"]) {
      const paged = kubectlJit(
        "alice",
        "logs",
        "kb-reader",
        "-n",
        kb.name,
        "-o",
        format,
        "--chunk-size",
        "1",
      );
      assert.equal(paged.stdout, format === "text" ? text : json.stdout, paged.stderr);
    }
    const events = json.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    assert.deepEqual(
      events.map((e) => [e.seq, e.kind, e.method, e.status]),
      [
        [1, "masked", "GET", 200],
        [2, "denied", "POST", 403],
      ],
    );

    // The same for alice from the identity provider, allowed by her IdP group.
    const oidcAlice = kubectlJit("oidc/alice", "logs", "kb-reader", "-n", kb.name);
    assert.equal(oidcAlice.stdout, text, oidcAlice.stderr);

    // bob may not: the API server refuses him before the operator is asked.
    const bob = kubectlJit("bob", "logs", "kb-reader", "-n", kb.name);
    assert.equal(bob.status, 1);
    assert.match(bob.stderr, /^Error from server \(Forbidden\): .*bob@example\.com/);
    const oidcMallory = kubectlJit("oidc/mallory", "logs", "kb-reader", "-n", kb.name);
    assert.equal(oidcMallory.status, 1);
    assert.match(
      oidcMallory.stderr,
      /^Error from server \(Forbidden\): .*oidc:mallory@example\.com/,
    );
    const missing = kubectlJit("alice", "logs", "never-ran", "-n", kb.name);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /Error from server \(NotFound\): no session of run "never-ran"/);

    // The session outlives the run's object.
    await deleteRun("alice", kb.name, "kb-reader");
    await eventually("the run to be gone", async () =>
      (await readRun(kb?.name ?? "", "kb-reader")) ? undefined : true,
    );
    const after = kubectlJit("alice", "logs", "kb-reader", "-n", kb.name);
    assert.equal(after.status, 0, after.stderr);
    assert.match(after.stdout, /^Run .* object deleted\): 2 events, 1 denied, 1 masked\n/);
  });

  it("believes who the reader is only from the API server's front proxy", async () => {
    assert.ok(kb, "the KB API test made the namespace");
    const apiService = await admin
      .makeApiClient(ApiregistrationV1Api)
      .readAPIService({ name: `${sessionsApi.version}.${sessionsApi.group}` });
    const caPem = Buffer.from(apiService.spec?.caBundle ?? "", "base64").toString("utf8");
    const pods = await core.listNamespacedPod({
      namespace: system.name,
      labelSelector: `app.kubernetes.io/instance=${release}`,
    });
    const podIp = pods.items.find((pod) => pod.status?.phase === "Running")?.status?.podIP ?? "";
    const servername = `${fullName}.${system.name}.svc`;
    const path = `/apis/${sessionsApiVersion}/namespaces/${kb.name}/${sessionsApi.resource}/kb-reader`;
    const pki = (name: string) => readFileSync(join(clusterDir, "pki", name), "utf8");
    const frontProxy = { cert: pki("front-proxy-client.crt"), key: pki("front-proxy-client.key") };
    const claim = (user: string, group: string) => ({
      "x-remote-user": user,
      "x-remote-group": group,
    });
    const get = (client: Parameters<typeof straightToOperator>[4], query = "") =>
      straightToOperator(podIp, servername, caPem, `${path}${query}`, client);

    // Headers alone, or with a certificate the cluster CA signed for alice, prove nothing.
    const forged = await get({ headers: claim("admin", "system:masters") });
    assert.equal(forged.status, 401);
    assert.match(forged.body.message ?? "", /no front-proxy client certificate/);
    const alicesOwn = await get({
      cert: pki("alice.crt"),
      key: pki("alice.key"),
      headers: claim("alice@example.com", "ml-platform"),
    });
    assert.equal(alicesOwn.status, 401);
    // The front proxy's word counts, and the operator still asks the API server about it.
    const asBob = await get({ ...frontProxy, headers: claim("bob@example.com", "security") });
    assert.equal(asBob.status, 403);
    assert.equal(asBob.body.reason, "Forbidden");
    const alice = { ...frontProxy, headers: claim("alice@example.com", "ml-platform") };
    const asAlice = await get(alice);
    assert.equal(asAlice.status, 200);
    assert.equal(asAlice.body.events?.length, 2);

    // Pages: `continue` is the last sequence number read; a bad limit names itself.
    const first = await get(alice, "?limit=1");
    assert.deepEqual([first.body.events?.map((e) => e.seq), first.body.continue], [[1], "1"]);
    const second = await get(alice, `?limit=1&continue=${first.body.continue}`);
    assert.deepEqual(
      [second.body.events?.map((e) => e.seq), second.body.continue],
      [[2], undefined],
    );
    const bad = await get(alice, "?limit=0");
    assert.equal(bad.status, 400);
    assert.match(bad.body.message ?? "", /limit must be an integer from 1 to 5000/);
  });

  it("runs a graph on the knowledge-base PostgreSQL through its sidecar: masked, one statement refused, checkpoints kept, every statement in the session beside the HTTP calls", async () => {
    assert.ok(kb, "the KB API test made the namespace");
    const database = await startKbDb(kb.name);
    kbDb = database;
    await createObject("admin", kb.name, "connections", database.connection);
    await createObject("admin", kb.name, "accesspolicies", {
      apiVersion: "langgraph-jit.dev/v1alpha1",
      kind: "AccessPolicy",
      metadata: { name: "kb-database" },
      spec: {
        subjects: [{ kind: "Group", name: "ml-platform" }],
        maxDuration: "1h",
        grants: [
          {
            connection: "kb-postgres",
            actions: ["read", "write", "ddl"],
            masking: { columns: ["author_email"], detectors: ["credit-card"], unmaskable: "Deny" },
          },
          {
            connection: "kb-api",
            actions: ["read"],
            masking: { jsonPaths: ["$.items[*].author_email"], unmaskable: "Deny" },
          },
        ],
      },
    });
    const run = graphRun("kb-both", 0);
    run.spec.access = [
      { connection: "kb-api", actions: ["read"] },
      { connection: "kb-postgres", actions: ["read", "write", "ddl"] },
    ];
    run.spec.template?.spec?.containers[0]?.env?.push(
      { name: "GRAPH_CALLS", value: "GET /v1/docs" },
      {
        name: "GRAPH_SQL",
        value: JSON.stringify([
          "SELECT title, author_email, note FROM docs ORDER BY id",
          "GRANT kb_owner TO CURRENT_USER",
        ]),
      },
      { name: "GRAPH_CHECKPOINTER", value: "postgres" },
      {
        name: "LGJIT_RUN",
        valueFrom: { fieldRef: { fieldPath: "metadata.labels['langgraph-jit.dev/run']" } },
      },
    );
    await createRun("alice", kb.name, run);
    const pod = await podOf(kb.name, "kb-both");
    const phase = await eventually(
      "run kb-both to end",
      async () => {
        const current = (await readRun(kb?.name ?? "", "kb-both"))?.status?.phase;
        return current === "Succeeded" || current === "Failed" ? current : undefined;
      },
      180_000,
    );
    const output = await core.readNamespacedPodLog({
      namespace: kb.name,
      name: pod.metadata?.name ?? "",
      container: "graph",
    });
    const sidecarLog = await core.readNamespacedPodLog({
      namespace: kb.name,
      name: pod.metadata?.name ?? "",
      container: "langgraph-jit-sidecar",
    });
    // A sidecar that restarted has its earlier instance's log too.
    const earlier = await core
      .readNamespacedPodLog({
        namespace: kb.name,
        name: pod.metadata?.name ?? "",
        container: "langgraph-jit-sidecar",
        previous: true,
      })
      .catch(() => "");
    assert.equal(phase, "Succeeded", `${output}\n${earlier}\n${sidecarLog}`);
    const summary = graphSummary(output);
    assert.equal(summary.ok, true, output);
    assert.deepEqual(summary.queries[0].rows, [
      {
        title: "Rotating keys",
        author_email: "[MASKED:column]",
        note: "paid with [MASKED:credit-card]",
      },
      { title: "Run budgets", author_email: "[MASKED:column]", note: "no payment" },
    ]);
    assert.equal(summary.queries[1].code, "42501");
    assert.match(
      summary.queries[1].message,
      /connection "kb-postgres": GRANT ROLE needs the admin action/,
    );
    assert.ok(summary.checkpoints >= 1, `${summary.checkpoints} checkpoints`);
    assert.ok(!output.includes(database.server.kb.adminPassword));
    // The run's role is gone with the run, and nobody granted it kb_owner.
    const admin = await database.server.connect();
    const left = await admin.query(
      "SELECT rolname FROM pg_roles WHERE rolname LIKE 'lgjit_kb_both%'",
    );
    await admin.end();
    assert.deepEqual(left.rows, []);

    const text = await eventually(
      "the session to hold the run's statements",
      async () => {
        const result = kubectlJit("alice", "logs", "kb-both", "-n", kb?.name ?? "");
        return result.status === 0 && /GRANT/.test(result.stdout) ? result.stdout : undefined;
      },
      60_000,
    );
    assert.match(text, /\skb-api\s+masked\s+GET \/v1\/docs\s+200\s/);
    assert.match(
      text,
      /\skb-postgres\s+masked\s+SELECT title, author_email, note FROM docs ORDER BY id\s+2 rows\s+.*read; tables docs; masked column×2 credit-card×1/,
    );
    assert.match(
      text,
      /\skb-postgres\s+denied\s+GRANT kb_owner TO CURRENT_USER\s+-\s.*ActionNotGranted/,
    );
    assert.match(text, /\skb-postgres\s+statement\s+CREATE TABLE IF NOT EXISTS /);
    assert.doesNotMatch(text, /@example\.com|4111/, "a masked value in the log");
  });

  it("holds alice's UPDATE on the knowledge-base PostgreSQL across a restart of every operator pod until bob approves it; the same UPDATE again is held anew and, denied, reaches nothing", async () => {
    const ns = await createTestNamespace("held-sql");
    const security = [{ kind: "Group" as const, name: "security" }];
    await setUpRunNamespace(
      ns.name,
      {
        grants: [
          {
            connection: "kb-postgres",
            actions: ["read", "write"],
            approval: { actions: ["write"], approvers: security, approvals: 1, timeout: "5m" },
          },
        ],
      },
      [],
    );
    // bob decides with the chart's approver role alone; alice reads the session with its reader role.
    await bindChartRoles(ns.name, [
      ["approver", ["bob@example.com"]],
      ["session-reader", ["alice@example.com"]],
    ]);
    const database = await startKbDb(ns.name);
    const { adminUser, adminPassword } = database.server;
    const kbAdmin = await database.server.connect(adminUser, adminPassword, "kb");
    try {
      await createObject("admin", ns.name, "connections", database.connection);
      const update = "UPDATE docs SET note = note || '+' WHERE title = 'Run budgets'";
      const run = graphRun("kb-editor", 0, "10m");
      run.spec.access = [{ connection: "kb-postgres", actions: ["read", "write"] }];
      run.spec.template?.spec?.containers[0]?.env?.push({
        name: "GRAPH_SQL",
        value: JSON.stringify([update, update]),
      });
      await createRun("alice", ns.name, run);
      /** The row's note as PostgreSQL has it now: each UPDATE that ran added one "+". */
      const note = async () =>
        (await kbAdmin.query("SELECT note FROM docs WHERE title = 'Run budgets'")).rows[0]?.note;
      const nextHeld = (seen: string[]) => nextHeldCommand(ns.name, seen);

      const first = await nextHeld([]);
      assert.equal(first.request, `kb-postgres: ${update}`);
      assert.equal(await note(), "no payment", "nothing reaches PostgreSQL while it is held");

      // Every operator pod killed at once, while the sidecar long-polls the decision.
      const apps = admin.makeApiClient(AppsV1Api);
      const operatorPods = async () =>
        (
          await core.listNamespacedPod({
            namespace: system.name,
            labelSelector: `app.kubernetes.io/instance=${release}`,
          })
        ).items;
      const killed = (await operatorPods()).map((pod) => pod.metadata?.name ?? "");
      assert.equal(killed.length, 2);
      for (const name of killed) {
        await core.deleteNamespacedPod({ namespace: system.name, name, gracePeriodSeconds: 0 });
      }
      await eventually(
        "two new operator pods to be Ready",
        async () => {
          const deployment = await apps.readNamespacedDeployment({
            name: fullName,
            namespace: system.name,
          });
          const ready = (await operatorPods()).filter(
            (pod) =>
              !killed.includes(pod.metadata?.name ?? "") &&
              pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
          );
          return deployment.status?.readyReplicas === 2 && ready.length === 2;
        },
        120_000,
      );
      assert.equal((await nextHeld([])).name, first.name, "the held UPDATE outlived the operator");
      assert.equal(await note(), "no payment");

      const approved = kubectlJit(
        "bob",
        "approve",
        first.name,
        "-n",
        ns.name,
        "--reason",
        "ok to change",
      );
      assert.equal(approved.status, 0, approved.stderr);
      assert.ok(
        approved.stdout.includes(
          `created: Approve HeldCommand ${ns.name}/${first.name} (kb-postgres: ${update})`,
        ),
        approved.stdout,
      );
      await eventually(
        "the approved UPDATE to change the row",
        async () => (await note()) === "no payment+",
        60_000,
      );

      const second = await nextHeld([first.name]);
      assert.notEqual(second.name, first.name, "approving one UPDATE approved no later one");
      assert.equal(second.request, `kb-postgres: ${update}`);
      assert.equal(await note(), "no payment+", "the same UPDATE again waits for its own decision");
      const denied = kubectlJit(
        "bob",
        "deny",
        second.name,
        "-n",
        ns.name,
        "--reason",
        "one is enough",
      );
      assert.equal(denied.status, 0, denied.stderr);
      // A refused statement is an outcome to the graph, not a failure of it.
      await waitForPhase(ns.name, "kb-editor", "Succeeded", 90_000);
      assert.equal(await note(), "no payment+", "the denied UPDATE reached nothing");

      const pod = await podOf(ns.name, "kb-editor");
      const podLog = (container: string) =>
        core.readNamespacedPodLog({
          namespace: ns.name,
          name: pod.metadata?.name ?? "",
          container,
        });
      const output = await podLog("graph");
      const refusal = `connection "kb-postgres": UPDATE was held for approval as ${second.name}: denied by bob@example.com: one is enough`;
      assert.ok(output.includes(`query kb-postgres: ${update}: 1 rows`), output);
      assert.ok(output.includes(`query kb-postgres: ${update}: 42501 ${refusal}`), output);
      const summary = graphSummary(output);
      assert.equal(summary.ok, true, output);
      assert.deepEqual(summary.queries, [
        { connection: "kb-postgres", sql: update, rows: [] },
        { connection: "kb-postgres", sql: update, code: "42501", message: refusal },
      ]);
      // The sidecar did lose the operator while it waited, and asked again.
      assert.match(await podLog("langgraph-jit-sidecar"), /asking about a held command failed/);

      const text = await eventually(
        "the session to hold both UPDATEs",
        async () => {
          const result = kubectlJit("alice", "logs", "kb-editor", "-n", ns.name);
          return result.status === 0 && result.stdout.includes(second.name)
            ? result.stdout
            : undefined;
        },
        60_000,
      );
      const recorded = "UPDATE docs SET note = note \\|\\| \\$1 WHERE title = \\$2";
      assert.match(
        text,
        new RegExp(
          `\\skb-postgres\\s+statement\\s+${recorded}\\s+1 rows\\s.*write; tables docs; held as ${first.name}, Approved: approved by bob@example\\.com \\(ok to change\\)$`,
          "m",
        ),
      );
      assert.match(
        text,
        new RegExp(
          `\\skb-postgres\\s+denied\\s+${recorded}\\s+-\\s.*write; tables docs; ApprovalDenied; held as ${second.name}, Denied: denied by bob@example\\.com: one is enough$`,
          "m",
        ),
      );
      assert.doesNotMatch(text, /Run budgets/, "a constant of the statement in the session");
    } finally {
      await kbAdmin.end();
      await database.stop();
      await ns.remove(120_000);
    }
  });

  it("keeps its APIService trusted when an operator of another installation starts", async () => {
    assert.ok(kb, "the KB API test made the namespace");
    const apis = admin.makeApiClient(ApiregistrationV1Api);
    const name = `${sessionsApi.version}.${sessionsApi.group}`;
    const caBundle = (await apis.readAPIService({ name })).spec?.caBundle;
    const other = await createTestNamespace("lgjit-other");
    const operator = await startOperator(other.name);
    try {
      assert.equal((await apis.readAPIService({ name })).spec?.caBundle, caBundle);
      const logs = kubectlJit("alice", "logs", "kb-reader", "-n", kb.name);
      assert.equal(logs.status, 0, logs.stderr);
    } finally {
      await operator.remove();
      await other.remove();
    }
  });
});
