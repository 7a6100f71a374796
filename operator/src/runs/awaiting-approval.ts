// AwaitingApproval: the run holds no Job and no credential while people decide. Each change
// of its Approvals, policies or Connections counts the decisions again against what the
// policies require now: enough approvers start it (its deadline counted from then), one Deny
// or the timeout denies it, and a grant withdrawn meanwhile denies it too.

import { isDeepStrictEqual } from "node:util";
import type { Logger } from "pino";
import {
  type LangGraphRun,
  type Requester,
  type RunApprovalStatus,
  RunPhase,
} from "../../../api/v1alpha1.ts";
import type { ReconcileResult } from "../kube/controller.ts";
import { metaTime } from "../kube/meta.ts";
import { type ApprovalOutcome, decideApproval } from "../policy/approval-rules.ts";
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
    const message = `the run's grant no longer holds: ${decision.message}`;
    const denied = await lifecycle.deny(run, log, decision.reason, message);
    await lifecycle.announceApproval(run, "Denied", message);
    return denied;
  }
  const namespace = run.metadata?.namespace ?? "";
  const approval = run.status?.approval ?? {};
  const now = lifecycle.now();
  const outcome = decideApproval({
    runUid: run.metadata?.uid ?? "",
    namespace,
    requester,
    // A policy that no longer asks for approval asks nothing: the others still must be met.
    rules: decision.runApprovals,
    approvals: lifecycle.deps.cache.approvals
      .list(namespace)
      .filter((a) => a.spec.run === run.metadata?.name && !a.spec.command),
    expiresAtMs: Date.parse(approval.expiresAt ?? "") || now.getTime(),
    nowMs: now.getTime(),
  });
  const decided = { ...approval, decisions: outcome.decisions, decidedAt: metaTime(now) };
  const result = await settle(lifecycle, run, requester, log, outcome, approval, decided);
  // Each decision counted is an Event on the run, once: after the status that counts it.
  const known = new Set((approval.decisions ?? []).map((d) => d.approval));
  for (const d of outcome.decisions.filter((d) => !known.has(d.approval))) {
    const verb = d.decision === "Approve" ? "approved" : "denied";
    await lifecycle.event(
      run,
      d.decision === "Approve" ? "Normal" : "Warning",
      "ApprovalDecided",
      "Approve",
      `${d.approver} ${verb} (Approval ${d.approval}): ${d.reason}`,
    );
  }
  return result;
}

/** Starts, denies or keeps waiting, as the outcome says. */
async function settle(
  lifecycle: RunLifecycle,
  run: LangGraphRun,
  requester: Requester,
  log: Logger,
  outcome: ApprovalOutcome,
  approval: RunApprovalStatus,
  decided: RunApprovalStatus,
): Promise<ReconcileResult> {
  const now = lifecycle.now();
  // Told once the decision is written (a conflict retries the whole step, unsent).
  const tell = (message: string) => lifecycle.announceApproval(run, outcome.state, message);
  switch (outcome.state) {
    case "Approved": {
      const by = outcome.decisions
        .filter((d) => d.decision === "Approve")
        .map((d) => `${d.approver} (${d.reason})`)
        .join(", ");
      const message = `approved by ${by}`;
      const started = await lifecycle.start(run, requester, { approval: decided }, [
        { type: "Approved", status: "True", reason: "Approved", message },
      ]);
      log.info({ approvers: outcome.decisions.map((d) => d.approver) }, "run approved");
      await lifecycle.event(run, "Normal", "Approved", "Approve", message);
      await tell(message);
      return started;
    }
    case "Denied": {
      const message = `denied by ${outcome.by.approver}: ${outcome.by.reason}`;
      const denied = await lifecycle.deny(
        run,
        log,
        "ApprovalDenied",
        message,
        { approval: decided },
        [{ type: "Approved", status: "False", reason: "ApprovalDenied", message }],
      );
      await tell(message);
      return denied;
    }
    case "Expired": {
      const message = `nobody approved the run before ${approval.expiresAt}`;
      const expired = await lifecycle.deny(
        run,
        log,
        "ApprovalExpired",
        message,
        { approval: decided },
        [{ type: "Approved", status: "False", reason: "ApprovalExpired", message }],
      );
      await tell(message);
      return expired;
    }
    case "Waiting": {
      // Decisions so far are shown on the run (kubectl jit approvals reads them).
      if (!isDeepStrictEqual(outcome.decisions, approval.decisions ?? [])) {
        const message = `waiting for ${outcome.waitingFor}`;
        await lifecycle.writeStatus(
          run,
          RunPhase.AwaitingApproval,
          { approval: { ...approval, decisions: outcome.decisions } },
          [
            { type: "Approved", status: "Unknown", reason: "AwaitingApproval", message },
            { type: "Ready", status: "False", reason: "AwaitingApproval", message },
          ],
        );
      }
      return { requeueAfterMs: Date.parse(approval.expiresAt ?? "") - now.getTime() };
    }
  }
}
