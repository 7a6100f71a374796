// Running: the Job and NetworkPolicy exist, the deadline holds, and the Job's outcome becomes
// the run's.
import { isDeepStrictEqual } from "node:util";
import type { V1Job } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { type LangGraphRun, RunPhase } from "../../../api/v1alpha1.ts";
import { isConflict } from "../kube/api-errors.ts";
import type { ReconcileResult } from "../kube/controller.ts";
import { connectionIn } from "../policy/namespace-connections.ts";
import { buildJob } from "./job-builder.ts";
import { runObjectName } from "./names.ts";
import { buildNetworkPolicy, connectionEndpoint, egressRules } from "./network-policy.ts";
import { requesterOf } from "./requester.ts";
import type { RunLifecycle } from "./run-lifecycle.ts";
import { trackPod } from "./running-pod.ts";
import { isRunJob } from "./status-seal.ts";

export async function track(
  lifecycle: RunLifecycle,
  run: LangGraphRun,
  log: Logger,
): Promise<ReconcileResult> {
  if (run.spec.source) return trackPod(lifecycle, run, log);
  const { cache, seal, workloads } = lifecycle.deps;
  const namespace = run.metadata?.namespace ?? "";
  const now = lifecycle.now();
  const deadline = Date.parse(run.status?.deadline ?? "");
  const finish = (phase: RunPhase, reason: string, message: string) =>
    lifecycle.finish(run, phase, reason, message, log);
  const expire = () =>
    finish(RunPhase.Expired, "DeadlineExceeded", "the run reached its maxDuration");
  if (!(deadline > now.getTime())) return expire();
  const jobName = runObjectName(run);
  await ensureNetworkPolicy(lifecycle, run, jobName);
  const job = cache.jobs.get(namespace, jobName) ?? (await workloads.readJob(namespace, jobName));
  if (!job) {
    if (run.status?.jobUID) {
      return finish(RunPhase.Failed, "JobDeleted", `Job ${jobName} was deleted`);
    }
    return createJob(lifecycle, run, jobName, deadline - now.getTime(), log);
  }
  if (!isRunJob(run, job, seal)) {
    return finish(
      RunPhase.Failed,
      "JobConflict",
      `Job ${jobName} exists and was not created by langgraph-jit for this run: it gets no credential`,
    );
  }
  const jobConditions = job.status?.conditions ?? [];
  const complete = jobConditions.find((c) => c.type === "Complete" && c.status === "True");
  const failed = jobConditions.find((c) => c.type === "Failed" && c.status === "True");
  if (complete) return finish(RunPhase.Succeeded, "JobComplete", "the graph completed");
  if (failed?.reason === "DeadlineExceeded") return expire();
  if (failed) {
    return finish(
      RunPhase.Failed,
      "JobFailed",
      failed.message || failed.reason || "the Job failed",
    );
  }
  await markJobRunning(lifecycle, run, job);
  return { requeueAfterMs: deadline - now.getTime() };
}

async function markJobRunning(lifecycle: RunLifecycle, run: LangGraphRun, job: V1Job) {
  const jobName = job.metadata?.name ?? "";
  await lifecycle.writeStatus(run, RunPhase.Running, { jobName, jobUID: job.metadata?.uid }, [
    {
      type: "Ready",
      status: "True",
      reason: "JobCreated",
      message: `Job ${jobName} is running the graph`,
    },
  ]);
}

/**
 * Creates the run's Job once its grant, its pod template as the requester and its
 * ServiceAccount still hold: any of them may have changed since the run was authorized.
 */
async function createJob(
  lifecycle: RunLifecycle,
  run: LangGraphRun,
  jobName: string,
  remainingMs: number,
  log: Logger,
): Promise<ReconcileResult> {
  const { deps } = lifecycle;
  const namespace = run.metadata?.namespace ?? "";
  const fail = (reason: string, message: string) =>
    lifecycle.finish(run, RunPhase.Failed, reason, message, log);
  const requester = requesterOf(run);
  if (!requester) return fail("RequesterUnknown", "the run has no valid requester");
  const decision = lifecycle.decide(run, requester);
  if (!decision.allowed) {
    return fail(decision.reason, `the run's grant no longer holds: ${decision.message}`);
  }
  const refused = await lifecycle.reviewTemplate(run, requester, decision.serviceAccount);
  if (refused) return fail("TemplateRefused", refused);
  const missing = await deps.serviceAccounts.ensure(namespace, decision.serviceAccount);
  if (missing) return fail("ServiceAccountNotFound", missing);

  const job = buildJob({
    run,
    connections: decision.grants.map((g) => g.connection),
    sidecar: { ...deps.sidecar, operatorCaPem: deps.operatorCaPem() },
    jobName,
    serviceAccount: decision.serviceAccount,
    seal: deps.seal.ofJob(run, jobName),
    activeDeadlineSeconds: Math.max(1, Math.ceil(remainingMs / 1000)),
  });
  let created: V1Job;
  try {
    created = await deps.workloads.createJob(namespace, job);
  } catch (error) {
    if (!isConflict(error)) throw error;
    // Ours from an earlier attempt, or someone else's: the next reconcile tells them apart.
    return { requeueAfterMs: 0 };
  }
  log.info({ job: jobName }, "created the run's Job");
  await lifecycle.event(run, "Normal", "JobCreated", "Start", `created Job ${jobName}`);
  await markJobRunning(lifecycle, run, created);
  return { requeueAfterMs: remainingMs };
}

export async function ensureNetworkPolicy(
  lifecycle: RunLifecycle,
  run: LangGraphRun,
  name: string,
): Promise<void> {
  const { cache, resolver, operatorEgress, workloads } = lifecycle.deps;
  const namespace = run.metadata?.namespace ?? "";
  const rules = [];
  for (const access of run.spec.access) {
    const connection = connectionIn(cache, namespace, access.connection);
    if (!connection) continue;
    rules.push(...(await egressRules(connectionEndpoint(connection), namespace, resolver)));
  }
  const desired = buildNetworkPolicy(run, name, rules, operatorEgress);
  const current = cache.networkPolicies.get(namespace, name);
  if (current && sameJson(current.spec, desired.spec)) return;
  await workloads.applyNetworkPolicy(namespace, desired);
}

/** Equal as JSON: listed objects are the client's model classes, watched ones plain objects. */
function sameJson(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(
    JSON.parse(JSON.stringify(a ?? null)),
    JSON.parse(JSON.stringify(b ?? null)),
  );
}
