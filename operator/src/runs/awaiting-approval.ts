// AwaitingApproval: the run holds no Job and no credential while it waits for a person. What
// the namespace's policies grant is checked again on every change: a waiting run whose grant
// was withdrawn is Denied rather than left to be approved into access nobody grants.
import type { Logger } from "pino";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import type { ReconcileResult } from "../kube/controller.ts";
import { requesterOf } from "./requester.ts";
import type { RunLifecycle } from "./run-lifecycle.ts";

export async function awaitApproval(
  lifecycle: RunLifecycle,
  run: LangGraphRun,
  log: Logger,
): Promise<ReconcileResult> {
  const requester = requesterOf(run);
  if (!requester) {
    return lifecycle.deny(run, log, "RequesterUnknown", "the run has no valid requester");
  }
  const decision = lifecycle.decide(run, requester);
  if (!decision.allowed) {
    return lifecycle.deny(
      run,
      log,
      decision.reason,
      `the run's grant no longer holds: ${decision.message}`,
    );
  }
  // Still granted: it waits for its approvers.
  return undefined;
}
