// Pending: decide from policy and review the pod as the requester, then deny, wait for
// approval, or start with a deadline fixed in status.
import type { Logger } from "pino";
import { parseDuration } from "../../../api/duration.ts";
import { type LangGraphRun, RunPhase } from "../../../api/v1alpha1.ts";
import type { ReconcileResult } from "../kube/controller.ts";
import { metaTime } from "../kube/meta.ts";
import type { ConditionUpdate } from "./conditions.ts";
import { requesterOf } from "./requester.ts";
import type { RunLifecycle } from "./run-lifecycle.ts";

export async function authorize(
  lifecycle: RunLifecycle,
  run: LangGraphRun,
  log: Logger,
): Promise<ReconcileResult> {
  const requester = requesterOf(run);
  if (!requester) {
    return lifecycle.deny(
      run,
      log,
      "RequesterUnknown",
      "the run has no valid langgraph-jit.dev/requester annotation: it was created without the admission webhook",
    );
  }
  const decision = lifecycle.decide(run, requester);
  if (!decision.allowed) return lifecycle.deny(run, log, decision.reason, decision.message);
  const refused = await lifecycle.reviewTemplate(run, requester, decision.serviceAccount);
  if (refused) return lifecycle.deny(run, log, "TemplateRefused", refused);

  const policies = [...new Set(decision.grants.map((g) => g.policy))].join(", ");
  const authorized: ConditionUpdate = {
    type: "Authorized",
    status: "True",
    reason: "Granted",
    message: `granted by AccessPolicy ${policies}`,
  };
  if (decision.runApprovers.length > 0) {
    const approvers = decision.runApprovers.map((s) => `${s.kind} ${s.name}`).join(", ");
    await lifecycle.writeStatus(run, RunPhase.AwaitingApproval, { requester }, [
      authorized,
      {
        type: "Approved",
        status: "Unknown",
        reason: "AwaitingApproval",
        message: `waiting for ${approvers}`,
      },
      {
        type: "Ready",
        status: "False",
        reason: "AwaitingApproval",
        message: `waiting for ${approvers}`,
      },
    ]);
    await lifecycle.event(
      run,
      "Normal",
      "AwaitingApproval",
      "Authorize",
      `access needs approval by ${approvers}`,
    );
    return;
  }
  const now = lifecycle.now();
  const deadline = new Date(now.getTime() + parseDuration(run.spec.maxDuration));
  // The deadline is fixed in status before anything runs, so a restart cannot extend it.
  await lifecycle.writeStatus(
    run,
    RunPhase.Running,
    { requester, startedAt: metaTime(now), deadline: metaTime(deadline) },
    [
      authorized,
      { type: "Ready", status: "False", reason: "Starting", message: "creating the run's Job" },
    ],
  );
  log.info({ requester: requester.username, policies }, "run authorized");
  await lifecycle.event(
    run,
    "Normal",
    "Authorized",
    "Authorize",
    `${requester.username}: ${authorized.message}`,
  );
  return { requeueAfterMs: 0 };
}
