// kubectl jit approvals / approve / deny: runs and held commands that wait for the caller's
// decision, and deciding them.
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
  type HeldCommand,
  type LangGraphRun,
  type Requester,
  RunPhase,
  resources,
  type Subject,
  version,
} from "../../api/v1alpha1.ts";
import { ApiError, requestJson } from "./kube-api.ts";

/** Something that waits for the caller's decision: a run, or one command its sidecar holds. */
export interface Waiting {
  kind: "run" | "command";
  namespace: string;
  /** What `kubectl jit approve` takes: the run's or the held command's name. */
  name: string;
  run: string;
  requester: string;
  /** The run's reason, or the held command: connection, method and path or statement. */
  request: string;
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

const describeSubjects = (subjects: Subject[]) =>
  subjects.map((s) => `${s.kind}/${s.name}`).join(",");

/** What waits for the user's decision and they have not decided: never their own runs' requests. */
export function waitingFor(user: Requester, runs: LangGraphRun[], held: HeldCommand[]): Waiting[] {
  const mayDecide = (namespace: string, subjects: Subject[], requester?: string) =>
    requester !== user.username && subjects.some((s) => subjectMatches(s, user, namespace));
  const waitingRuns = runs.flatMap((run): Waiting[] => {
    const status = run.status;
    const namespace = run.metadata?.namespace ?? "";
    const approval = status?.approval;
    if (status?.phase !== RunPhase.AwaitingApproval || !approval) return [];
    const requirements = approval.requirements ?? [];
    const subjects = requirements.flatMap((r) => r.approvers);
    if (!mayDecide(namespace, subjects, status.requester?.username)) return [];
    if (approval.decisions?.some((d) => d.approver === user.username)) return [];
    const approved = approval.decisions?.filter((d) => d.decision === "Approve").length ?? 0;
    const needed = requirements.reduce((sum, r) => sum + r.approvals, 0);
    const name = run.metadata?.name ?? "";
    return [
      {
        kind: "run",
        namespace,
        name,
        run: name,
        requester: status.requester?.username ?? "",
        request: `run: ${run.spec.reason || "no reason given"}`,
        access: accessOf(run),
        requestedAt: approval.requestedAt ?? "",
        expiresAt: approval.expiresAt ?? "",
        approvals: `${approved}/${needed}`,
        approvers: describeSubjects(subjects),
      },
    ];
  });
  const waitingCommands = held.flatMap((command): Waiting[] => {
    const namespace = command.metadata?.namespace ?? "";
    const status = command.status;
    const run = runs.find(
      (r) => r.metadata?.namespace === namespace && r.metadata?.name === command.spec.run,
    );
    if (status?.phase !== "Pending" || !run) return [];
    const requester = run.status?.requester?.username;
    if (!mayDecide(namespace, status.approvers ?? [], requester)) return [];
    if (status.decisions?.some((d) => d.approver === user.username)) return [];
    const approved = status.decisions?.filter((d) => d.decision === "Approve").length ?? 0;
    const { body: sent } = command.spec;
    const body = sent ? ` (body sha256 ${sent.sha256?.slice(0, 12)}…, ${sent.bytes} bytes)` : "";
    return [
      {
        kind: "command",
        namespace,
        name: command.metadata?.name ?? "",
        run: command.spec.run,
        requester: requester ?? "",
        request: `${command.spec.connection}: ${command.spec.sql?.statement ?? command.spec.summary}${body}`,
        access: `${command.spec.connection}=${command.spec.action}`,
        requestedAt: String(command.metadata?.creationTimestamp ?? ""),
        expiresAt: status.expiresAt ?? "",
        approvals: `${approved}/${status.approvals ?? 1}`,
        approvers: describeSubjects(status.approvers ?? []),
      },
    ];
  });
  return [...waitingRuns, ...waitingCommands];
}

function accessOf(run: LangGraphRun): string {
  return run.spec.access.map((a) => `${a.connection}=${a.actions.join(",")}`).join("; ");
}

async function list<T>(
  kc: KubeConfig,
  plural: string,
  namespace: string | undefined,
): Promise<T[]> {
  const scope = namespace ? `/namespaces/${encodeURIComponent(namespace)}` : "";
  const answer = await requestJson<{ items: T[] }>(
    kc,
    "GET",
    `/apis/${group}/${version}${scope}/${plural}`,
  );
  return answer.items;
}

/** Runs and held commands in one namespace, or in every namespace the caller may list. */
export async function listWaiting(
  kc: KubeConfig,
  namespace: string | undefined,
): Promise<{ runs: LangGraphRun[]; held: HeldCommand[] }> {
  const [runs, held] = await Promise.all([
    list<LangGraphRun>(kc, resources.runs, namespace),
    list<HeldCommand>(kc, resources.heldCommands, namespace),
  ]);
  return { runs, held };
}

/**
 * Decides NAME: the held command of that name when there is one (approving that command only),
 * else the run of that name.
 */
export async function decide(
  kc: KubeConfig,
  namespace: string,
  name: string,
  decision: Approval["spec"]["decision"],
  reason: string,
): Promise<{ approval: Approval; what: string }> {
  const base = `/apis/${group}/${version}/namespaces/${encodeURIComponent(namespace)}`;
  let command: HeldCommand | undefined;
  try {
    command = await requestJson<HeldCommand>(
      kc,
      "GET",
      `${base}/${resources.heldCommands}/${encodeURIComponent(name)}`,
    );
  } catch (error) {
    // Not a held command (or not one the caller may read): a run, then.
    if (!(error instanceof ApiError) || (error.code !== 404 && error.code !== 403)) throw error;
  }
  const run = command?.spec.run ?? name;
  const approval: Approval = {
    apiVersion,
    kind: "Approval",
    metadata: { generateName: `${command ? name : run}-` },
    spec: { run, ...(command ? { command: name } : {}), decision, reason },
  };
  const created = await requestJson<Approval>(
    kc,
    "POST",
    `${base}/${resources.approvals}`,
    approval,
  );
  const what = command
    ? `HeldCommand ${namespace}/${name} (${command.spec.connection}: ${command.spec.summary})`
    : `LangGraphRun ${namespace}/${run}`;
  return { approval: created, what };
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
  waiting: Waiting[],
  format: ListFormat,
  allNamespaces: boolean,
  nowMs: number,
): string {
  if (format === "json") return `${JSON.stringify(waiting, null, 2)}\n`;
  if (format === "yaml") return stringify(waiting);
  if (waiting.length === 0) return "";
  const header = [
    ...(allNamespaces ? ["NAMESPACE"] : []),
    "NAME",
    "REQUESTER",
    "APPROVALS",
    "WAITING",
    "REQUEST",
    ...(format === "wide" ? ["RUN", "ACCESS", "APPROVERS", "EXPIRES"] : []),
  ];
  const rows = waiting.map((w) => [
    ...(allNamespaces ? [w.namespace] : []),
    w.name,
    w.requester,
    w.approvals,
    age(w.requestedAt, nowMs),
    w.request,
    ...(format === "wide" ? [w.run, w.access, w.approvers, w.expiresAt] : []),
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
