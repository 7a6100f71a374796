// The owner chain that binds a pod to a run: pod -> Job -> LangGraphRun, matched by uid at
// every step, so a pod or run recreated under the same name is never mistaken for the old one;
// the Job is the one the operator sealed for the run, and the pod is that Job's, unaltered.
import type { V1Job, V1OwnerReference, V1Pod } from "@kubernetes/client-node";
import {
  type AnyConnection,
  apiVersion,
  finishedPhases,
  type LangGraphRun,
  labels,
  RunPhase,
} from "../../../api/v1alpha1.ts";
import type { Cache } from "../kube/cache.ts";
import { runLabels, type SidecarSettings } from "../runs/job-builder.ts";
import { runObjectName } from "../runs/names.ts";
import type { PodRuleOptions } from "../runs/pod-rules.ts";
import { podDeviation } from "../runs/run-pod.ts";
import { isRunJob, type StatusSeal } from "../runs/status-seal.ts";
import {
  type AccountMay,
  accountReach,
  mountedConnectionSecret,
  taggedPodDeviation,
} from "../runs/tagged-pod.ts";
import { HttpError } from "../server/https-server.ts";
import type { PodIdentity } from "./token-review.ts";

export interface OwnerChainDeps {
  readPod(namespace: string, name: string): Promise<V1Pod | undefined>;
  readJob(namespace: string, name: string): Promise<V1Job | undefined>;
  jobs: Cache<V1Job>;
  runs: Cache<LangGraphRun>;
  seal: StatusSeal;
  /** Set when the operator injects tagged pods: what their live pods are checked against. */
  tagged?: {
    /** The connections the namespace may name now. */
    connections(namespace: string): AnyConnection[];
    sidecar(): SidecarSettings;
    rules: PodRuleOptions;
    accountMay: AccountMay;
  };
}

function controllerOf(
  owners: V1OwnerReference[] | undefined,
  ownerApiVersion: string,
  kind: string,
): V1OwnerReference | undefined {
  return owners?.find((o) => o.controller && o.apiVersion === ownerApiVersion && o.kind === kind);
}

/** The run whose Job owns the pod, and the pod, or an HttpError naming the broken link. */
export async function runOfPod(
  identity: PodIdentity,
  deps: OwnerChainDeps,
): Promise<{ run: LangGraphRun; pod: V1Pod }> {
  const { namespace, podName, podUid } = identity;
  const pod = await deps.readPod(namespace, podName);
  if (pod?.metadata?.uid !== podUid) {
    const why = pod ? `was replaced (uid ${pod.metadata?.uid}, token for ${podUid})` : "is gone";
    throw new HttpError(403, "PodNotFound", `pod ${namespace}/${podName} ${why}`);
  }
  if (pod.metadata?.labels?.[labels.inject] === "true") return taggedRunOfPod(pod, deps);
  const jobRef = controllerOf(pod.metadata?.ownerReferences, "batch/v1", "Job");
  if (!jobRef) {
    throw new HttpError(403, "NotARunPod", `pod ${namespace}/${podName} is not owned by a Job`);
  }
  const cached = deps.jobs.get(namespace, jobRef.name);
  const job =
    cached?.metadata?.uid === jobRef.uid ? cached : await deps.readJob(namespace, jobRef.name);
  if (job?.metadata?.uid !== jobRef.uid) {
    throw new HttpError(403, "NotARunPod", `Job ${namespace}/${jobRef.name} of the pod is gone`);
  }
  const runRef = controllerOf(job.metadata?.ownerReferences, apiVersion, "LangGraphRun");
  if (!runRef) {
    throw new HttpError(
      403,
      "NotARunPod",
      `Job ${namespace}/${jobRef.name} of pod ${podName} is not owned by a LangGraphRun`,
    );
  }
  const run = deps.runs.get(namespace, runRef.name);
  if (run?.metadata?.uid !== runRef.uid) {
    throw new HttpError(403, "RunNotFound", `LangGraphRun ${namespace}/${runRef.name} is gone`);
  }
  // Owner references are claims anyone may write: only the Job the operator makes for the run
  // counts, known by its one name (not status.jobName, which the pod can outrun).
  if (jobRef.name !== runObjectName(run) || !isRunJob(run, job, deps.seal)) {
    throw new HttpError(
      403,
      "NotARunPod",
      `Job ${namespace}/${jobRef.name} is not the Job langgraph-jit created for LangGraphRun ${runRef.name}`,
    );
  }
  const deviation = podDeviation(pod, job);
  if (deviation) {
    throw new HttpError(
      403,
      "NotARunPod",
      `pod ${namespace}/${podName} is not the pod of Job ${jobRef.name}: ${deviation}`,
    );
  }
  return { run, pod };
}

/**
 * A tagged pod's run: the one the operator recorded for this pod (by uid), while the live pod
 * is still exactly what the webhook injected.
 */
async function taggedRunOfPod(
  pod: V1Pod,
  deps: OwnerChainDeps,
): Promise<{ run: LangGraphRun; pod: V1Pod }> {
  const namespace = pod.metadata?.namespace ?? "";
  const name = `pod ${namespace}/${pod.metadata?.name}`;
  if (!deps.tagged) {
    throw new HttpError(
      403,
      "NotARunPod",
      `${name} is labelled for injection, which this operator does not do (--inject-pods)`,
    );
  }
  const run = deps.runs.get(namespace, pod.metadata?.name ?? "");
  if (!run || run.spec.source?.uid !== pod.metadata?.uid) {
    throw new HttpError(403, "RunNotFound", `no LangGraphRun records ${name} (yet)`);
  }
  const available = deps.tagged.connections(namespace);
  const connections = run.spec.access.flatMap(
    (a) => available.find((c) => c.metadata?.name === a.connection) ?? [],
  );
  // A name the namespace may no longer use (the selector dropped it): the grant is what went.
  const gone = run.spec.access.find(
    (a) => !available.some((c) => c.metadata?.name === a.connection),
  );
  if (gone) {
    throw new HttpError(
      403,
      "AccessRevoked",
      `the run's grant no longer holds: namespace "${namespace}" may no longer use connection "${gone.connection}"`,
    );
  }
  // What the webhook refused, checked again on the live pod: it may never have been asked.
  const deviation =
    taggedPodDeviation(pod, connections, deps.tagged.sidecar(), deps.tagged.rules) ??
    mountedConnectionSecret(pod, available) ??
    (await accountReach(pod, available, deps.tagged.accountMay));
  if (deviation) {
    throw new HttpError(
      403,
      "NotARunPod",
      `${name} is not the pod langgraph-jit injected: ${deviation}`,
    );
  }
  // The run's label puts the pod under its NetworkPolicy: no credential before that.
  const label = runLabels(run);
  if (Object.entries(label).some(([key, value]) => pod.metadata?.labels?.[key] !== value)) {
    throw new HttpError(
      503,
      "NotReadyYet",
      `${name} is not under its run's NetworkPolicy yet; the sidecar asks again`,
    );
  }
  return { run, pod };
}

/** Why the run may not hold a credential now, or undefined while it may. */
export function credentialRefusal(
  run: LangGraphRun,
  nowMs: number,
  seal: StatusSeal,
): HttpError | undefined {
  const name = `LangGraphRun ${run.metadata?.namespace}/${run.metadata?.name}`;
  const phase = run.status?.phase ?? RunPhase.Pending;
  if (run.status?.credential?.revokedAt || run.metadata?.deletionTimestamp) {
    return new HttpError(401, "Revoked", `${name} has ended and its credentials are revoked`);
  }
  if (!seal.statusIsTrusted(run)) {
    return new HttpError(
      403,
      "StatusNotSealed",
      `${name} is in phase ${phase}, which langgraph-jit did not set`,
    );
  }
  if (phase !== RunPhase.Running) {
    const state = finishedPhases.has(phase) ? "has finished" : "has not started";
    return new HttpError(403, "RunNotRunning", `${name} ${state} (phase ${phase})`);
  }
  if (!(Date.parse(run.status?.deadline ?? "") > nowMs)) {
    return new HttpError(403, "DeadlineExceeded", `${name} is past its deadline`);
  }
  return undefined;
}
