// What decides a held command, counted afresh from the cache each time it is asked (by the
// sidecar's long-poll, the webhook, the status controller): its run must still be Running and
// hold its credential, the run's grant must still hold the action for approval, and the
// Approvals naming this command (and no other) must meet the grant's approvers and number.
import type { HoldState } from "../../../api/credentials.ts";
import { parseDuration } from "../../../api/duration.ts";
import {
  type AccessPolicy,
  type Approval,
  type ApprovalDecision,
  annotations,
  type HeldCommand,
  type LangGraphRun,
} from "../../../api/v1alpha1.ts";
import { credentialRefusal } from "../credentials/run-of-pod.ts";
import { type ApprovalOutcome, decideApproval } from "../policy/approval-rules.ts";
import { evaluateAccess, type RunApprovalRule } from "../policy/evaluate-access.ts";
import type { NamespaceConnections } from "../policy/namespace-connections.ts";
import { requesterOf } from "../runs/requester.ts";
import type { StatusSeal } from "../runs/status-seal.ts";

export interface HeldCommandView {
  state: HoldState;
  rule: RunApprovalRule | undefined;
  decisions: ApprovalDecision[];
}

export interface HeldCommandInput {
  command: HeldCommand;
  run: LangGraphRun | undefined;
  policies: AccessPolicy[];
  connections: NamespaceConnections;
  approvals: Approval[];
  seal: StatusSeal;
  nowMs: number;
}

/** The grant's approval rule for the command's connection and action, as policies say now. */
export function holdRule(
  run: LangGraphRun,
  connection: string,
  action: string,
  policies: AccessPolicy[],
  connections: NamespaceConnections,
): RunApprovalRule | undefined {
  const requester = requesterOf(run);
  if (!requester) return undefined;
  const decision = evaluateAccess({
    namespace: run.metadata?.namespace ?? "",
    requester,
    access: run.spec.access,
    maxDurationMs: parseDuration(run.spec.maxDuration),
    policies,
    ...connections,
  });
  if (!decision.allowed) return undefined;
  const granted = decision.grants.find((g) => g.connection.metadata?.name === connection);
  const approval = granted?.grant.approval;
  if (!granted || !approval?.actions.includes(action as never)) return undefined;
  return {
    policy: granted.policy,
    approvers: approval.approvers,
    approvals: approval.approvals ?? 1,
    timeoutMs: parseDuration(approval.timeout ?? "10m"),
  };
}

export function heldCommandView(input: HeldCommandInput): HeldCommandView {
  const { command, run, nowMs } = input;
  const name = command.metadata?.name ?? "";
  const created = new Date(command.metadata?.creationTimestamp ?? nowMs).getTime();
  const view = (
    phase: HoldState["phase"],
    message: string,
    rule?: RunApprovalRule,
    decisions: ApprovalDecision[] = [],
  ) => ({
    state: {
      name,
      phase,
      message,
      expiresAt: new Date(created + (rule?.timeoutMs ?? 0)).toISOString(),
    },
    rule,
    decisions,
  });
  const runUid = command.metadata?.annotations?.[annotations.runUid];
  if (!run || run.metadata?.uid !== runUid) return view("Denied", "the run is gone");
  const ended = credentialRefusal(run, nowMs, input.seal);
  if (ended) return view("Denied", `the run no longer holds its credential: ${ended.message}`);
  const rule = holdRule(
    run,
    command.spec.connection,
    command.spec.action,
    input.policies,
    input.connections,
  );
  if (!rule) {
    return view(
      "Denied",
      `the run's grant no longer holds "${command.spec.action}" on connection "${command.spec.connection}" for approval`,
    );
  }
  const outcome: ApprovalOutcome = decideApproval({
    runUid: runUid ?? "",
    namespace: run.metadata?.namespace ?? "",
    requester: requesterOf(run) ?? { username: "" },
    rules: [rule],
    approvals: input.approvals.filter((a) => a.spec.command === name),
    expiresAtMs: created + rule.timeoutMs,
    nowMs,
  });
  switch (outcome.state) {
    case "Approved":
      return view(
        "Approved",
        `approved by ${outcome.decisions
          .filter((d) => d.decision === "Approve")
          .map((d) => `${d.approver} (${d.reason})`)
          .join(", ")}`,
        rule,
        outcome.decisions,
      );
    case "Denied":
      return view(
        "Denied",
        `denied by ${outcome.by.approver}: ${outcome.by.reason}`,
        rule,
        outcome.decisions,
      );
    case "Expired":
      return view("Expired", "nobody approved the command in time", rule, outcome.decisions);
    case "Waiting":
      return view("Pending", `waiting for ${outcome.waitingFor}`, rule, outcome.decisions);
  }
}
