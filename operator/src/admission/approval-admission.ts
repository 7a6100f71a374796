// Admission of Approvals: the approver is stamped from the API server's authentication of the
// request, exactly as a run's requester is, together with the uid of the run it decides; an
// Approval counts only from someone the run's policy names who is not its requester, is made
// once per person, and never changes. RBAC decides who may create Approvals at all; this
// webhook decides whose count.
import { isDeepStrictEqual } from "node:util";
import { parseDuration } from "../../../api/duration.ts";
import {
  type AccessPolicy,
  type Approval,
  annotations,
  type Connection,
  type HeldCommand,
  type LangGraphRun,
  RunPhase,
} from "../../../api/v1alpha1.ts";
import { heldCommandView } from "../approvals/held-command-state.ts";
import { whyNotApprover } from "../policy/approval-rules.ts";
import { evaluateAccess, type RunApprovalRule } from "../policy/evaluate-access.ts";
import type { NamespaceConnections } from "../policy/namespace-connections.ts";
import { stampedUser } from "../policy/stamped-user.ts";
import { requesterOf } from "../runs/requester.ts";
import type { StatusSeal } from "../runs/status-seal.ts";
import {
  type AdmissionRequest,
  type AdmissionResponse,
  addAnnotations,
  allow,
  deny,
} from "./admission-review.ts";
import { requesterFrom } from "./run-admission.ts";

const stampedFields = [annotations.approver, annotations.runUid];

/** What the approval webhooks read, from the caches. */
export interface ApprovalAdmissionDeps {
  run(namespace: string, name: string): LangGraphRun | undefined;
  heldCommand(namespace: string, name: string): HeldCommand | undefined;
  seal: StatusSeal;
  approvals(namespace: string): Approval[];
  policies(namespace: string): AccessPolicy[];
  connections(namespace: string): NamespaceConnections;
}

/** Mutating webhook: stamps the approver and the run's uid on CREATE; a client may set neither. */
export function mutateApproval(
  request: AdmissionRequest<Approval>,
  deps: ApprovalAdmissionDeps,
): AdmissionResponse {
  const approval = request.object;
  if (request.operation !== "CREATE" || !approval) return allow(request);
  const preset = stampedFields.find((key) => approval.metadata?.annotations?.[key] !== undefined);
  if (preset) {
    return deny(
      request,
      `metadata.annotations[${preset}] is set by langgraph-jit from your authenticated identity and the run; a request may not set it`,
    );
  }
  const namespace = request.namespace ?? "";
  const run = deps.run(namespace, approval.spec?.run ?? "");
  if (!run) {
    return deny(
      request,
      `spec.run: LangGraphRun ${namespace}/${approval.spec?.run} does not exist`,
      422,
    );
  }
  return allow(
    request,
    addAnnotations(approval, {
      [annotations.approver]: JSON.stringify(requesterFrom(request.userInfo)),
      [annotations.runUid]: run.metadata?.uid ?? "",
    }),
  );
}

/** Validating webhook, after every mutation. */
export function validateApproval(
  request: AdmissionRequest<Approval>,
  deps: ApprovalAdmissionDeps,
): AdmissionResponse {
  const approval = request.object;
  if (!approval) return allow(request);
  if (request.operation === "UPDATE") {
    const changed = stampedFields.find(
      (key) =>
        approval.metadata?.annotations?.[key] !== request.oldObject?.metadata?.annotations?.[key],
    );
    return changed
      ? deny(request, `metadata.annotations[${changed}] is immutable`)
      : allow(request);
  }
  if (request.operation !== "CREATE") return allow(request);

  const approver = stampedUser(approval, annotations.approver);
  if (!approver || !isDeepStrictEqual(approver, requesterFrom(request.userInfo))) {
    return deny(
      request,
      `metadata.annotations[${annotations.approver}] does not match the authenticated approver`,
    );
  }
  const namespace = request.namespace ?? "";
  const name = approval.spec.run;
  const run = deps.run(namespace, name);
  if (!run || run.metadata?.uid !== approval.metadata?.annotations?.[annotations.runUid]) {
    return deny(request, `spec.run: LangGraphRun ${namespace}/${name} does not exist`, 422);
  }
  const requester = requesterOf(run);
  if (!requester) {
    return deny(request, `LangGraphRun ${namespace}/${name} has no valid requester`, 422);
  }
  const command = approval.spec.command;
  const what = command
    ? `HeldCommand ${namespace}/${command}`
    : `LangGraphRun ${namespace}/${name}`;
  let rules: RunApprovalRule[];
  if (command) {
    const held = deps.heldCommand(namespace, command);
    if (
      held?.spec.run !== name ||
      held.metadata?.annotations?.[annotations.runUid] !== run.metadata?.uid
    ) {
      return deny(
        request,
        `spec.command: LangGraphRun ${namespace}/${name} holds no command ${command}`,
        422,
      );
    }
    const view = heldCommandView({
      command: held,
      run,
      policies: deps.policies(namespace),
      connections: deps.connections(namespace),
      approvals: deps.approvals(namespace),
      seal: deps.seal,
      nowMs: Date.now(),
    });
    if (view.state.phase !== "Pending") {
      return deny(
        request,
        `${what} is not waiting for approval (${view.state.phase}: ${view.state.message})`,
        422,
      );
    }
    rules = view.rule ? [view.rule] : [];
  } else {
    const phase = run.status?.phase ?? RunPhase.Pending;
    if (phase !== RunPhase.AwaitingApproval) {
      return deny(request, `${what} is not waiting for approval (phase ${phase})`, 422);
    }
    const decision = evaluateAccess({
      namespace,
      requester,
      access: run.spec.access,
      maxDurationMs: parseDuration(run.spec.maxDuration),
      policies: deps.policies(namespace),
      ...deps.connections(namespace),
    });
    rules = decision.allowed ? decision.runApprovals : [];
  }
  const why = whyNotApprover(approver, requester, rules, namespace);
  if (why) return deny(request, why);
  const earlier = deps
    .approvals(namespace)
    .find(
      (other) =>
        other.metadata?.annotations?.[annotations.runUid] === run.metadata?.uid &&
        other.spec.command === command &&
        stampedUser(other, annotations.approver)?.username === approver.username,
    );
  if (earlier) {
    return deny(
      request,
      `${approver.username} already decided ${what} (Approval ${earlier.metadata?.name}: ${earlier.spec.decision})`,
      422,
    );
  }
  return allow(request);
}

/**
 * Validating webhook on heldcommands and their status: a held command is what a run's sidecar
 * asked the operator to hold, so only the operator's own identity makes or changes one.
 */
export function validateHeldCommand(
  request: AdmissionRequest<HeldCommand>,
  operatorUsername: string,
): AdmissionResponse {
  if (request.operation === "DELETE" || request.userInfo.username === operatorUsername) {
    return allow(request);
  }
  return deny(
    request,
    `HeldCommands are made and decided by langgraph-jit (${operatorUsername}) alone, not by ${request.userInfo.username}: decide one with an Approval`,
  );
}
