// kubectl jit approvals / approve / deny: what waits for the caller's decision, and deciding it.
// The caller is who the API server says they are (SelfSubjectReview); which runs they may
// decide comes from each run's status (its policies' approvers), and the operator's webhook
// has the last word on whose Approval counts.
import type { KubeConfig } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { subjectMatches } from "../../api/subjects.ts";
import {
  type Approval,
  apiVersion,
  group,
  type LangGraphRun,
  type Requester,
  RunPhase,
  resources,
  version,
} from "../../api/v1alpha1.ts";
import { requestJson } from "./kube-api.ts";

export interface WaitingRun {
  namespace: string;
  name: string;
  requester: string;
  reason: string;
  access: string;
  requestedAt: string;
  expiresAt: string;
  /** "1/2": approvals counted of those needed, over every requirement. */
  approvals: string;
  approvers: string;
}

/** The caller as the API server authenticates them. */
export async function whoAmI(kc: KubeConfig): Promise<Requester> {
  const review = await requestJson<{ status?: { userInfo?: Requester } }>(
    kc,
    "POST",
    "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  );
  const user = review.status?.userInfo;
  if (!user?.username) throw new Error("the API server did not say who you are");
  return user;
}

/** Runs waiting for approval that the user may decide and has not: never their own. */
export function waitingFor(user: Requester, runs: LangGraphRun[]): WaitingRun[] {
  return runs.flatMap((run) => {
    const status = run.status;
    const namespace = run.metadata?.namespace ?? "";
    const approval = status?.approval;
    if (status?.phase !== RunPhase.AwaitingApproval || !approval) return [];
    if (status.requester?.username === user.username) return [];
    const requirements = approval.requirements ?? [];
    const mine = requirements.some((r) =>
      r.approvers.some((subject) => subjectMatches(subject, user, namespace)),
    );
    const decided = approval.decisions?.some((d) => d.approver === user.username);
    if (!mine || decided) return [];
    const approved = approval.decisions?.filter((d) => d.decision === "Approve").length ?? 0;
    const needed = requirements.reduce((sum, r) => sum + r.approvals, 0);
    return [
      {
        namespace,
        name: run.metadata?.name ?? "",
        requester: status.requester?.username ?? "",
        reason: run.spec.reason ?? "",
        access: run.spec.access.map((a) => `${a.connection}=${a.actions.join(",")}`).join("; "),
        requestedAt: approval.requestedAt ?? "",
        expiresAt: approval.expiresAt ?? "",
        approvals: `${approved}/${needed}`,
        approvers: requirements
          .flatMap((r) => r.approvers.map((s) => `${s.kind}/${s.name}`))
          .join(","),
      },
    ];
  });
}

/** Runs waiting in one namespace, or in every namespace the caller may list. */
export async function listRuns(
  kc: KubeConfig,
  namespace: string | undefined,
): Promise<LangGraphRun[]> {
  const scope = namespace ? `/namespaces/${encodeURIComponent(namespace)}` : "";
  const list = await requestJson<{ items: LangGraphRun[] }>(
    kc,
    "GET",
    `/apis/${group}/${version}${scope}/${resources.runs}`,
  );
  return list.items;
}

export function decide(
  kc: KubeConfig,
  namespace: string,
  run: string,
  decision: Approval["spec"]["decision"],
  reason: string,
): Promise<Approval> {
  const approval: Approval = {
    apiVersion,
    kind: "Approval",
    metadata: { generateName: `${run}-` },
    spec: { run, decision, reason },
  };
  return requestJson<Approval>(
    kc,
    "POST",
    `/apis/${group}/${version}/namespaces/${encodeURIComponent(namespace)}/${resources.approvals}`,
    approval,
  );
}

/** How long ago, as kubectl's AGE column writes it (5s, 3m, 2h, 4d). */
export function age(since: string, nowMs: number): string {
  const seconds = Math.max(0, Math.floor((nowMs - Date.parse(since)) / 1000));
  if (Number.isNaN(seconds)) return "<unknown>";
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

export type ListFormat = "text" | "wide" | "json" | "yaml";

export function formatWaiting(
  waiting: WaitingRun[],
  format: ListFormat,
  allNamespaces: boolean,
  nowMs: number,
): string {
  if (format === "json") return `${JSON.stringify(waiting, null, 2)}\n`;
  if (format === "yaml") return stringify(waiting);
  if (waiting.length === 0) return "";
  const header = [
    ...(allNamespaces ? ["NAMESPACE"] : []),
    "RUN",
    "REQUESTER",
    "APPROVALS",
    "WAITING",
    "REASON",
    ...(format === "wide" ? ["ACCESS", "APPROVERS", "EXPIRES"] : []),
  ];
  const rows = waiting.map((w) => [
    ...(allNamespaces ? [w.namespace] : []),
    w.name,
    w.requester,
    w.approvals,
    age(w.requestedAt, nowMs),
    w.reason || "<none>",
    ...(format === "wide" ? [w.access, w.approvers, w.expiresAt] : []),
  ]);
  return table([header, ...rows]);
}

function table(rows: string[][]): string {
  const widths =
    rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? "").length))) ?? [];
  return rows
    .map(
      (row) =>
        `${row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("   ")}\n`,
    )
    .join("");
}
