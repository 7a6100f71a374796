import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import pino from "pino";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { postgresConnection } from "../testing/connections.ts";
import { apiError, FakeCluster } from "../testing/fake-cluster.ts";
import { PodRunReconciler } from "./pod-runs.ts";

const key = "agents/kb-server-7d9f8-x2x9q";

function taggedPod(
  options: { annotations?: Record<string, string>; phase?: string; injected?: boolean } = {},
): V1Pod {
  return {
    metadata: {
      name: "kb-server-7d9f8-x2x9q",
      namespace: "agents",
      uid: "pod-1",
      labels: { "langgraph-jit.dev/inject": "true" },
      annotations: { "langgraph-jit.dev/access": "kb-postgres=read", ...options.annotations },
      ownerReferences: [
        {
          apiVersion: "apps/v1",
          kind: "ReplicaSet",
          name: "kb-server-7d9f8",
          uid: "rs-1",
          controller: true,
        },
      ],
    },
    spec: {
      serviceAccountName: "kb-server",
      initContainers:
        options.injected === false ? [] : [{ name: "langgraph-jit-sidecar", image: "sidecar" }],
      containers: [{ name: "graph", image: "graph" }],
    },
    status: { phase: options.phase ?? "Pending" },
  };
}

function setup(pod: V1Pod = taggedPod()) {
  const cluster = new FakeCluster();
  cluster.policies.put({
    metadata: { name: "kb-server", namespace: "agents" },
    spec: {
      subjects: [{ kind: "ServiceAccount", name: "kb-server" }],
      maxDuration: "45m",
      grants: [{ connection: "kb-postgres", actions: ["read"] }],
    },
  });
  cluster.connections.put({
    ...postgresConnection(),
    metadata: { name: "kb-postgres", namespace: "agents" },
  });
  cluster.taggedPods.put(pod);
  const created: LangGraphRun[] = [];
  const enabled = new Set(["agents"]);
  let seq = 0;
  const reconciler = new PodRunReconciler({
    cache: cluster,
    writer: {
      createRun: async (namespace, run) => {
        if (cluster.runs.get(namespace, run.metadata?.name ?? "")) throw apiError(409, "exists");
        created.push(run);
        return cluster.runs.put({ ...run, metadata: { ...run.metadata, uid: `run-${++seq}` } });
      },
      injectionEnabled: async (namespace) => enabled.has(namespace),
    },
    logger: pino({ level: "silent" }),
  });
  return { cluster, created, enabled, reconcile: () => reconciler.reconcile(key) };
}

describe("recording tagged pods as runs", () => {
  it("records an injected pod as a run it owns, stamped with its ServiceAccount", async () => {
    const s = setup();
    assert.equal(await s.reconcile(), undefined);
    assert.deepEqual(s.created, [
      {
        apiVersion: "langgraph-jit.dev/v1alpha1",
        kind: "LangGraphRun",
        metadata: {
          name: "kb-server-7d9f8-x2x9q",
          namespace: "agents",
          annotations: {
            "langgraph-jit.dev/requester": JSON.stringify({
              username: "system:serviceaccount:agents:kb-server",
              uid: "",
              groups: [
                "system:serviceaccounts",
                "system:serviceaccounts:agents",
                "system:authenticated",
              ],
            }),
          },
          ownerReferences: [
            {
              apiVersion: "v1",
              kind: "Pod",
              name: "kb-server-7d9f8-x2x9q",
              uid: "pod-1",
              controller: true,
            },
          ],
        },
        spec: {
          source: {
            pod: "kb-server-7d9f8-x2x9q",
            uid: "pod-1",
            owner: "ReplicaSet/kb-server-7d9f8",
          },
          access: [{ connection: "kb-postgres", actions: ["read"] }],
          maxDuration: "45m",
          reason: "tagged pod of ReplicaSet kb-server-7d9f8",
        },
      },
    ]);
    await s.reconcile();
    assert.equal(s.created.length, 1, "once");
  });

  it("takes one credential's life from the pod when it pins one", async () => {
    const s = setup(taggedPod({ annotations: { "langgraph-jit.dev/max-duration": "10m" } }));
    await s.reconcile();
    assert.equal(s.created[0]?.spec.maxDuration, "10m");
  });

  it("does not record a pod again after the run that labelled it was deleted to cut it off", async () => {
    const s = setup();
    await s.reconcile();
    const pod = s.cluster.taggedPods.get("agents", "kb-server-7d9f8-x2x9q") as V1Pod;
    s.cluster.taggedPods.put({
      ...pod,
      metadata: {
        ...pod.metadata,
        labels: { ...pod.metadata?.labels, "langgraph-jit.dev/run": "kb-server-7d9f8-x2x9q" },
      },
    });
    s.cluster.runs.remove(s.cluster.runs.get("agents", "kb-server-7d9f8-x2x9q") as LangGraphRun);
    await s.reconcile();
    assert.equal(s.created.length, 1);
  });

  it("records nothing where the namespace does not allow injection", async () => {
    const s = setup();
    s.enabled.clear();
    assert.equal(await s.reconcile(), undefined);
    assert.deepEqual(s.created, []);
  });

  it("records nothing, and does not fail, when the annotation was broken after admission", async () => {
    const s = setup(taggedPod({ annotations: { "langgraph-jit.dev/access": "kb-postgres:read" } }));
    assert.equal(await s.reconcile(), undefined);
    assert.deepEqual(s.created, []);
  });

  it("records nothing for a pod the webhook did not inject, or one that has ended", async () => {
    for (const pod of [taggedPod({ injected: false }), taggedPod({ phase: "Succeeded" })]) {
      const s = setup(pod);
      assert.equal(await s.reconcile(), undefined);
      assert.deepEqual(s.created, []);
    }
  });

  it("waits while an earlier pod's run of the same name is still there", async () => {
    const s = setup();
    s.cluster.runs.put({
      metadata: { name: "kb-server-7d9f8-x2x9q", namespace: "agents", uid: "old-run" },
      spec: {
        source: { pod: "kb-server-7d9f8-x2x9q", uid: "pod-0" },
        access: [],
        maxDuration: "30m",
      },
    });
    assert.deepEqual(await s.reconcile(), { requeueAfterMs: 2_000 });
    assert.deepEqual(s.created, []);
  });
});
