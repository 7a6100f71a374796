// Running, for a tagged pod's run: no Job, the pod is the workload. The run lasts as long as
// its pod; its deadline is one credential's life and rolls forward while the policy still
// grants the access (so sidecar refreshes re-issue), and a withdrawn grant ends the run, its
// credentials revoked, leaving the pod running without access.
import type { Logger } from "pino";
import { parseDuration } from "../../../api/duration.ts";
import { type LangGraphRun, RunPhase } from "../../../api/v1alpha1.ts";
import type { ReconcileResult } from "../kube/controller.ts";
import { metaTime } from "../kube/meta.ts";
import { runLabels } from "./job-builder.ts";
import { runObjectName } from "./names.ts";
import { requesterOf } from "./requester.ts";
import type { RunLifecycle } from "./run-lifecycle.ts";
import { ensureNetworkPolicy } from "./running-run.ts";
import { taggedPodDeviation } from "./tagged-pod.ts";

export async function trackPod(
  lifecycle: RunLifecycle,
  run: LangGraphRun,
  log: Logger,
): Promise<ReconcileResult> {
  const namespace = run.metadata?.namespace ?? "";
  const source = run.spec.source;
  const finish = (phase: RunPhase, reason: string, message: string) =>
    lifecycle.finish(run, phase, reason, message, log);
  const pod = source && lifecycle.deps.cache.taggedPods.get(namespace, source.pod);
  if (!source || pod?.metadata?.uid !== source.uid || pod.metadata?.deletionTimestamp) {
    return finish(RunPhase.Cancelled, "PodDeleted", `pod ${source?.pod} is gone`);
  }
  if (pod.status?.phase === "Succeeded") {
    return finish(RunPhase.Succeeded, "PodSucceeded", `pod ${source.pod} completed`);
  }
  if (pod.status?.phase === "Failed") {
    const why = pod.status.message || pod.status.reason || "its containers failed";
    return finish(RunPhase.Failed, "PodFailed", `pod ${source.pod} failed: ${why}`);
  }
  const requester = requesterOf(run);
  if (!requester)
    return finish(RunPhase.Failed, "RequesterUnknown", "the run has no valid requester");
  const decision = lifecycle.decide(run, requester);
  if (!decision.allowed) {
    return finish(
      RunPhase.Failed,
      decision.reason,
      `the grant no longer holds, so pod ${source.pod} is cut off: ${decision.message}`,
    );
  }
  // The live pod is still what was injected: an ephemeral container, say, ends its access.
  const altered = taggedPodDeviation(
    pod,
    decision.grants.map((g) => g.connection),
    { ...lifecycle.deps.sidecar, operatorCaPem: lifecycle.deps.operatorCaPem() },
    lifecycle.deps.templateReview.rules,
  );
  if (altered) {
    return finish(
      RunPhase.Failed,
      "PodAltered",
      `pod ${source.pod} is no longer as injected: ${altered}`,
    );
  }
  // Egress only through the sidecar, before the pod may hold a credential (issuance waits for
  // the run's label on the pod, which selects it into the NetworkPolicy).
  await ensureNetworkPolicy(lifecycle, run, runObjectName(run));
  const label = runLabels(run);
  if (Object.entries(label).some(([key, value]) => pod.metadata?.labels?.[key] !== value)) {
    await lifecycle.deps.workloads.labelPod(namespace, source.pod, source.uid, label);
  }
  const lifeMs = parseDuration(run.spec.maxDuration);
  const now = lifecycle.now().getTime();
  let deadline = Date.parse(run.status?.deadline ?? "");
  // Half a credential's life ahead: a sidecar refreshing at 80% of its life always finds more.
  if (!(deadline - now > lifeMs / 2)) deadline = now + lifeMs;
  await lifecycle.writeStatus(run, RunPhase.Running, { deadline: metaTime(deadline) }, [
    {
      type: "Ready",
      status: "True",
      reason: "PodRunning",
      message: `pod ${source.pod} holds its credential while the policy grants it`,
    },
  ]);
  return { requeueAfterMs: Math.max(1_000, deadline - lifeMs / 2 - now) };
}
