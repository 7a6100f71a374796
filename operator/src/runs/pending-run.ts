// Pending: decide from policy and review the pod as the requester, then deny, wait for
// approval, or start.
import type { Logger } from "pino";
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
  // A tagged pod was reviewed when it was admitted; issuance checks the live pod again.
  const refused =
    !run.spec.source && (await lifecycle.reviewTemplate(run, requester, decision.serviceAccount));
  if (refused) return lifecycle.deny(run, log, "TemplateRefused", refused);

  const policies = [...new Set(decision.grants.map((g) => g.policy))].join(", ");
  const authorized: ConditionUpdate = {
    type: "Authorized",
    status: "True",
    reason: "Granted",
    message: `granted by AccessPolicy ${policies}`,
  };
  const rules = decision.runApprovals;
  if (rules.length > 0) {
    const now = lifecycle.now();
    // The shortest timeout of the policies asking: none of them waits longer than it allows.
    const expiresAt = now.getTime() + Math.min(...rules.map((rule) => rule.timeoutMs));
    const waiting = `waiting for ${rules.map((rule) => `${rule.approvals} of ${rule.approvers.map((s) => `${s.kind} ${s.name}`).join(", ")}`).join("; ")}`;
    await lifecycle.writeStatus(
      run,
      RunPhase.AwaitingApproval,
      {
        requester,
        approval: {
          requestedAt: metaTime(now),
          expiresAt: metaTime(expiresAt),
          requirements: rules.map(({ policy, approvers, approvals }) => ({
            policy,
            approvers,
            approvals,
          })),
          decisions: [],
        },
      },
      [
        authorized,
        { type: "Approved", status: "Unknown", reason: "AwaitingApproval", message: waiting },
        { type: "Ready", status: "False", reason: "AwaitingApproval", message: waiting },
      ],
    );
    log.info({ requester: requester.username, policies }, "run awaits approval");
    await lifecycle.event(
      run,
      "Normal",
      "AwaitingApproval",
      "Authorize",
      `access needs approval: ${waiting}`,
    );
    await lifecycle.announceApproval(
      run,
      "Waiting",
      waiting,
      rules.map((rule) => rule.policy),
    );
    return { requeueAfterMs: expiresAt - now.getTime() };
  }
  const started = await lifecycle.start(run, requester, {}, [authorized]);
  log.info({ requester: requester.username, policies }, "run authorized");
  await lifecycle.event(
    run,
    "Normal",
    "Authorized",
    "Authorize",
    `${requester.username}: ${authorized.message}`,
  );
  return started;
}
