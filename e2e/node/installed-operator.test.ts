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
import {
  createRun,
  readRun,
  runManifest,
  setUpBearerApiNamespace,
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

  before(async () => {
    system = await createTestNamespace("lgjit-system");
    agents = await createTestNamespace("agents");
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
});
