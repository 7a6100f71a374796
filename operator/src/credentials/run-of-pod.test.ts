// The owner chain binds a token's pod to one run by uid at every link (invariant 2): a pod,
// Job or run recreated under the same name, or a Job the run did not make, gets nothing.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { StatusSeal } from "../runs/status-seal.ts";
import type { HttpError } from "../server/https-server.ts";
import { type OwnerChainDeps, runOfPod } from "./run-of-pod.ts";

const seal = new StatusSeal(Buffer.alloc(32, 7));
const podSpec = { containers: [{ name: "graph", image: "g" }] };
const jobLabels = {
  "batch.kubernetes.io/controller-uid": "job-1",
  "batch.kubernetes.io/job-name": "r",
};

const identity = { namespace: "agents", serviceAccount: "default", podName: "p", podUid: "pod-1" };
const controller = { controller: true, blockOwnerDeletion: true };

function chain(
  changes: { pod?: Partial<V1Pod>; job?: Partial<V1Job>; run?: Partial<LangGraphRun> } = {},
) {
  const run: LangGraphRun = {
    metadata: { name: "r", namespace: "agents", uid: "run-1" },
    spec: { template: {}, access: [], maxDuration: "1h" },
    status: { phase: "Running", jobName: "r", jobUID: "job-1" },
    ...changes.run,
  };
  const job: V1Job = {
    spec: { template: { spec: podSpec } },
    metadata: {
      name: "r",
      namespace: "agents",
      uid: "job-1",
      annotations: { "langgraph-jit.dev/seal": seal.ofJob(run, "r") },
      ownerReferences: [
        {
          apiVersion: "langgraph-jit.dev/v1alpha1",
          kind: "LangGraphRun",
          name: "r",
          uid: "run-1",
          ...controller,
        },
      ],
    },
    ...changes.job,
  };
  const pod: V1Pod = {
    spec: podSpec,
    metadata: {
      name: "p",
      namespace: "agents",
      uid: "pod-1",
      labels: jobLabels,
      ownerReferences: [
        { apiVersion: "batch/v1", kind: "Job", name: "r", uid: "job-1", ...controller },
      ],
    },
    ...changes.pod,
  };
  const one = <T>(object: T) => ({ get: () => object, list: () => [object] });
  const deps: OwnerChainDeps = {
    readPod: async () => pod,
    readJob: async () => job,
    jobs: one(job),
    runs: one(run),
    seal,
  };
  return runOfPod(identity, deps);
}

async function refusal(result: Promise<unknown>, message?: RegExp): Promise<string> {
  const error = (await result.then(
    () => assert.fail("the chain was accepted"),
    (e: unknown) => e,
  )) as HttpError;
  if (message) assert.match(error.message, message);
  return `${error.status} ${error.reason}`;
}

describe("the owner chain pod -> Job -> LangGraphRun", () => {
  it("accepts the pod of the run's own Job", async () => {
    const { run } = await chain();
    assert.equal(run.metadata?.uid, "run-1");
  });

  it("refuses a pod recreated under the token's pod name", async () => {
    assert.equal(
      await refusal(chain({ pod: { metadata: { name: "p", uid: "pod-2" } } })),
      "403 PodNotFound",
    );
  });

  it("refuses a pod no Job controls", async () => {
    const orphan = { metadata: { name: "p", uid: "pod-1", ownerReferences: [] } };
    assert.equal(await refusal(chain({ pod: orphan })), "403 NotARunPod");
  });

  it("refuses a Job recreated under the owner's name", async () => {
    const job = { metadata: { name: "r", uid: "job-2", ownerReferences: [] } };
    assert.equal(await refusal(chain({ job })), "403 NotARunPod");
  });

  it("refuses a run recreated under the Job's owner name", async () => {
    const run = { metadata: { name: "r", namespace: "agents", uid: "run-2" } };
    assert.equal(await refusal(chain({ run })), "403 RunNotFound");
  });

  it("refuses a Job that claims the run under another name than the operator gives its Job", async () => {
    const claim = { apiVersion: "langgraph-jit.dev/v1alpha1", kind: "LangGraphRun", name: "r" };
    const job = {
      metadata: { name: "another", uid: "job-9", ownerReferences: [{ ...claim, uid: "run-1" }] },
    };
    const jobRef = { apiVersion: "batch/v1", kind: "Job", name: "another", uid: "job-9" };
    const pod = {
      metadata: { name: "p", uid: "pod-1", ownerReferences: [{ ...jobRef, ...controller }] },
    };
    assert.equal(await refusal(chain({ job, pod })), "403 NotARunPod");
  });

  it("serves the run's sealed Job before the run records its uid (the pod can start first)", async () => {
    const run = {
      metadata: { name: "r", namespace: "agents", uid: "run-1" },
      status: { phase: "Running" as const },
    };
    assert.equal((await chain({ run })).run.metadata?.uid, "run-1");
  });

  it("refuses the pod of a Job someone else made under the run's name", async () => {
    const run = {
      metadata: { name: "r", namespace: "agents", uid: "run-1" },
      status: { phase: "Running" as const },
    };
    const claim = { apiVersion: "langgraph-jit.dev/v1alpha1", kind: "LangGraphRun", name: "r" };
    const job = {
      metadata: {
        name: "r",
        uid: "job-1",
        ownerReferences: [{ ...claim, uid: "run-1", ...controller }],
      },
      spec: { template: { spec: podSpec } },
    };
    assert.equal(
      await refusal(
        chain({ run, job }),
        /^Job agents\/r is not the Job langgraph-jit created for LangGraphRun r$/,
      ),
      "403 NotARunPod",
    );
  });

  it("refuses a pod that claims the run's Job but is not made from its template", async () => {
    const pod = {
      metadata: {
        name: "p",
        uid: "pod-1",
        labels: jobLabels,
        ownerReferences: [
          { apiVersion: "batch/v1", kind: "Job", name: "r", uid: "job-1", ...controller },
        ],
      },
      spec: { containers: [{ name: "graph", image: "evil/graph:1" }] },
    };
    assert.equal(
      await refusal(
        chain({ pod }),
        /^pod agents\/p is not the pod of Job r: containers\[0\] "graph"\.image differs from the Job's template$/,
      ),
      "403 NotARunPod",
    );
  });
});
