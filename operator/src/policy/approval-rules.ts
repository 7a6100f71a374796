// Who may decide a run's approval, and what the Approvals made so far decide. Pure: the
// webhook asks whyNotApprover before admitting an Approval, and the run controller counts the
// admitted ones with decideApproval, checking every approver again (a policy may have changed).

import { subjectMatches } from "../../../api/subjects.ts";
import {
  type Approval,
  type ApprovalDecision,
  annotations,
  type Requester,
} from "../../../api/v1alpha1.ts";
import type { RunApprovalRule } from "./evaluate-access.ts";
import { stampedUser } from "./stamped-user.ts";

const describe = (rule: RunApprovalRule) =>
  `${rule.approvers.map((s) => `${s.kind} ${s.name}`).join(", ")} (AccessPolicy ${rule.policy})`;

/** Why this person's decision does not count for the run, or undefined when it does. */
export function whyNotApprover(
  approver: Requester,
  requester: Requester,
  rules: RunApprovalRule[],
  namespace: string,
): string | undefined {
  if (approver.username === requester.username) {
    return `${approver.username} requested the run and may not decide its approval`;
  }
  if (!rules.some((rule) => approves(rule, approver, namespace))) {
    const who = rules.map(describe).join("; ");
    return `${approver.username} is not among the run's approvers: ${who || "its policies require no approval"}`;
  }
  return undefined;
}

function approves(rule: RunApprovalRule, approver: Requester, namespace: string): boolean {
  return rule.approvers.some((subject) => subjectMatches(subject, approver, namespace));
}

export type ApprovalOutcome =
  | { state: "Approved"; decisions: ApprovalDecision[] }
  | { state: "Denied"; by: ApprovalDecision; decisions: ApprovalDecision[] }
  | { state: "Expired"; decisions: ApprovalDecision[] }
  | { state: "Waiting"; waitingFor: string; decisions: ApprovalDecision[] };

export interface ApprovalInput {
  runUid: string;
  namespace: string;
  requester: Requester;
  rules: RunApprovalRule[];
  /** The namespace's Approvals naming the run; those of another run under its name are skipped. */
  approvals: Approval[];
  expiresAtMs: number;
  nowMs: number;
}

/**
 * What the counted Approvals decide: one Deny ends it; each rule met by its number of distinct
 * approvers approves it; otherwise it waits until it expires. Each approver counts once, by
 * their first decision; approvals from anyone the rules do not name (or the requester) are
 * not counted.
 */
export function decideApproval(input: ApprovalInput): ApprovalOutcome {
  const counted = new Map<string, { decision: ApprovalDecision; approver: Requester }>();
  const ordered = [...input.approvals].sort(
    (a, b) =>
      createdMs(a) - createdMs(b) || (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""),
  );
  for (const approval of ordered) {
    if (approval.metadata?.annotations?.[annotations.runUid] !== input.runUid) continue;
    const approver = stampedUser(approval, annotations.approver);
    if (!approver || counted.has(approver.username)) continue;
    if (whyNotApprover(approver, input.requester, input.rules, input.namespace)) continue;
    counted.set(approver.username, {
      approver,
      decision: {
        approval: approval.metadata?.name ?? "",
        approver: approver.username,
        decision: approval.spec.decision,
        reason: approval.spec.reason,
        at: new Date(createdMs(approval)).toISOString().replace(/\.\d{3}Z$/, "Z"),
      },
    });
  }
  const decisions = [...counted.values()].map((c) => c.decision);
  const denial = decisions.find((d) => d.decision === "Deny");
  if (denial) return { state: "Denied", by: denial, decisions };
  const unmet = input.rules.flatMap((rule) => {
    const approvedBy = [...counted.values()].filter(
      (c) => c.decision.decision === "Approve" && approves(rule, c.approver, input.namespace),
    ).length;
    return approvedBy >= rule.approvals
      ? []
      : [`${rule.approvals - approvedBy} more of ${describe(rule)}`];
  });
  if (unmet.length === 0) return { state: "Approved", decisions };
  if (input.nowMs >= input.expiresAtMs) return { state: "Expired", decisions };
  return { state: "Waiting", waitingFor: unmet.join("; "), decisions };
}

function createdMs(approval: Approval): number {
  const created = approval.metadata?.creationTimestamp;
  return created ? new Date(created).getTime() : 0;
}
