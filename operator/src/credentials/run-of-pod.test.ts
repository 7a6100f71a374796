// A tagged pod's credential goes only to the run the operator recorded for that pod (by uid),
// while the live pod is as injected, under its run's NetworkPolicy, and its account reaches no
// Connection's credentials.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import type { AnyConnection, Connection, LangGraphRun } from "../../../api/v1alpha1.ts";
import { runIdentityEnv, type SidecarSettings, withSidecar } from "../runs/job-builder.ts";
import { StatusSeal } from "../runs/status-seal.ts";
import { postgresConnection } from "../testing/connections.ts";
import { FakeCluster } from "../testing/fake-cluster.ts";
import { type OwnerChainDeps, runOfPod } from "./run-of-pod.ts";

const sidecar: SidecarSettings = {
  image: "sidecar:test",
  imagePullPolicy: "Never",
  uid: 17337,
  operatorUrl: "https://operator:8443",
  operatorCaPem: "ca",
  capture: false,
};
const connection: Connection = {
  ...postgresConnection(),
  metadata: { name: "kb-postgres", namespace: "agents" },
};
const identity = {
  namespace: "agents",
  serviceAccount: "kb-server",
  podName: "p",
  podUid: "pod-1",
};

function pod(labels: Record<string, string> = { "langgraph-jit.dev/run": "p" }): V1Pod {
  return {
    metadata: {
      name: "p",
      namespace: "agents",
      uid: "pod-1",
      labels: { "langgraph-jit.dev/inject": "true", ...labels },
    },
    spec: withSidecar(
      { serviceAccountName: "kb-server", containers: [{ name: "graph", image: "g" }] },
      runIdentityEnv(undefined),
      [connection],
      sidecar,
    ),
  };
}

function setup(
  options: {
    sourceUid?: string;
    reach?: string;
    tagged?: boolean;
    available?: AnyConnection[];
  } = {},
) {
  const cluster = new FakeCluster();
  const run: LangGraphRun = {
    metadata: { name: "p", namespace: "agents", uid: "run-1" },
    spec: {
      source: { pod: "p", uid: options.sourceUid ?? "pod-1" },
      access: [{ connection: "kb-postgres", actions: ["read"] }],
      maxDuration: "30m",
    },
  };
  cluster.runs.put(run);
  return (live: V1Pod = pod()) => {
    const deps: OwnerChainDeps = {
      readPod: async () => live,
      readJob: async () => undefined,
      jobs: cluster.jobs,
      runs: cluster.runs,
      seal: new StatusSeal(Buffer.alloc(32, 1)),
      ...(options.tagged === false
        ? {}
        : {
            tagged: {
              connections: () => options.available ?? [connection],
              sidecar: () => sidecar,
              rules: { sidecarUid: 17337, capture: false },
              accountMay: async (_account, _namespace, { verb, resource, name }) =>
                `${verb} ${resource} ${name ?? ""}`.trim() === options.reach,
            },
          }),
    };
    return runOfPod(identity, deps);
  };
}

const refusal = (reason: string, message: RegExp) => (error: unknown) => {
  assert.equal((error as { reason?: string }).reason, reason);
  assert.match((error as Error).message, message);
  return true;
};

describe("a tagged pod's run, at issuance", () => {
  it("is the run recorded for this pod, while the pod is as injected and under its policy", async () => {
    const { run } = await setup()();
    assert.equal(run.metadata?.uid, "run-1");
  });

  it("is not a run recorded for an earlier pod of the name", async () => {
    await assert.rejects(
      setup({ sourceUid: "pod-0" })(),
      refusal("RunNotFound", /no LangGraphRun records pod agents\/p/),
    );
  });

  it("waits until the pod is labelled into its run's NetworkPolicy", async () => {
    await assert.rejects(
      setup()(pod({})),
      refusal("NotReadyYet", /not under its run's NetworkPolicy yet/),
    );
  });

  it("is refused when the pod's account could read a Connection's Secret", async () => {
    await assert.rejects(
      setup({ reach: "get secrets kb-admin" })(),
      refusal("NotARunPod", /ServiceAccount "kb-server" may get Secret "kb-admin"/),
    );
  });

  it("is refused when the operator does not inject tagged pods", async () => {
    await assert.rejects(setup({ tagged: false })(), refusal("NotARunPod", /--inject-pods/));
  });

  it("is refused as the grant's end when the namespace may no longer use a connection it names", async () => {
    await assert.rejects(
      setup({ available: [] })(),
      refusal("AccessRevoked", /namespace "agents" may no longer use connection "kb-postgres"/),
    );
  });
});
