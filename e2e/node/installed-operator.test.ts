// The product as users install it: `helm install` of the chart with the locally built images,
// then real runs on the real node: the native sidecar starts first and fetches its credential
// from the in-cluster operator over its Service, the example LangGraph graph runs and exits, and
// the run ends Succeeded (or Expired) with its credential revoked, even across a leader change.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  AppsV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  type V1Pod,
} from "@kubernetes/client-node";
import type { LangGraphRun } from "../../api/v1alpha1.ts";
import {
  clusterDir,
  createTestNamespace,
  eventually,
  kubeConfigFor,
  repoRoot,
  statusOf,
  type TestNamespace,
} from "../lib/cluster.ts";
import { type KbApi, startKbApi } from "../lib/kb-api.ts";
import { type PostgresServer, startPostgres, testNode } from "../lib/postgres.ts";
import {
  createObject,
  createRun,
  readRun,
  runManifest,
  setUpBearerApiNamespace,
  setUpRunNamespace,
  waitForPhase,
} from "../lib/runs.ts";

const release = "lgjit";
const fullName = "lgjit-langgraph-jit";
const images = {
  sidecar: "localhost/lgjit/sidecar:test",
  graph: "localhost/lgjit/graph:test",
};
const admin = kubeConfigFor("admin");
const core = admin.makeApiClient(CoreV1Api);
const leases = admin.makeApiClient(CoordinationV1Api);

function helm(...args: string[]) {
  const result = spawnSync(
    join(clusterDir, "bin", "helm"),
    [...args, "--kubeconfig", join(clusterDir, "admin.kubeconfig")],
    { encoding: "utf8" },
  );
  assert.equal(result.status, 0, `helm ${args.join(" ")}:\n${result.stdout}${result.stderr}`);
}

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
            image: images.graph,
            imagePullPolicy: "Never",
            env: [{ name: "GRAPH_WORK_SECONDS", value: String(workSeconds) }],
          },
        ],
      },
    },
  });
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
    helm(
      "install",
      release,
      join(repoRoot, "charts", "langgraph-jit"),
      "--namespace",
      system.name,
      "--set",
      "image.repository=localhost/lgjit/operator,image.tag=test,image.pullPolicy=Never",
      "--set",
      `sidecar.image=${images.sidecar},sidecar.pullPolicy=Never`,
      "--set",
      "replicaCount=2,sessionStore.postgresSecret.name=session-store,sessionStore.postgresSecret.key=url",
      "--wait",
      "--timeout",
      "3m",
    );
    await setUpBearerApiNamespace(agents.name, "kb-api-bearer");
  });

  after(async () => {
    await agents?.remove(120_000);
    if (system) helm("uninstall", release, "--namespace", system.name, "--wait", "--timeout", "2m");
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
    const summary = JSON.parse(output.trim().split("\n").at(-1) ?? "{}");
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
          return graph?.state?.terminated || current.status?.phase === "Failed" ? true : undefined;
        } catch (error) {
          return statusOf(error) === 404 ? true : undefined;
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
    const kb = await createTestNamespace("kb");
    let started: KbApi | undefined;
    try {
      await setUpRunNamespace(
        kb.name,
        {
          grants: [
            {
              connection: "kb-api",
              actions: ["read"],
              http: { rules: [{ methods: ["GET"], paths: ["/v1/docs/**"] }] },
              masking: { jsonPaths: ["$.items[*].author_email"], detectors: ["credit-card"] },
            },
          ],
        },
        [],
      );
      // After the namespace, which made Service kb-api: the API goes behind that Service.
      const api = await startKbApi(kb.name);
      started = api;
      await createObject("admin", kb.name, "connections", api.connection);
      const run = graphRun("kb-reader", 0);
      const graph = run.spec.template.spec?.containers[0];
      graph?.env?.push({ name: "GRAPH_CALLS", value: "GET /v1/docs, POST /v1/docs" });
      await createRun("alice", kb.name, run);
      const pod = await podOf(kb.name, "kb-reader");
      await waitForPhase(kb.name, "kb-reader", "Succeeded", 120_000);

      const output = await core.readNamespacedPodLog({
        namespace: kb.name,
        name: pod.metadata?.name ?? "",
        container: "graph",
      });
      const summary = JSON.parse(output.trim().split("\n").at(-1) ?? "{}");
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
          const current = await readRun(kb.name, "kb-reader");
          return current?.status?.session?.events === 2 ? current.status.session : undefined;
        },
        30_000,
      );
      assert.deepEqual(session, { events: 2, denied: 1, masked: 1 });
    } finally {
      await started?.stop();
      await kb.remove(120_000);
    }
  });
});
