// The langgraph-jit.dev/v1alpha1 API: generated resource types plus the contract's names.
import type {
  AccessPolicySpec,
  ClusterConnection,
  Connection,
  LangGraphRun,
  LangGraphRunSpec,
  LangGraphRunStatus,
} from "./v1alpha1.generated.ts";

export type * from "./v1alpha1.generated.ts";

/** What a grant's `connection` may name: a namespace's own, or one the platform offers it. */
export type AnyConnection = Connection | ClusterConnection;

export const group = "langgraph-jit.dev";
export const version = "v1alpha1";
export const apiVersion = `${group}/${version}`;

/** Plural resource names, as the API server serves them. */
export const resources = {
  runs: "langgraphruns",
  connections: "connections",
  clusterConnections: "clusterconnections",
  policies: "accesspolicies",
  approvals: "approvals",
  heldCommands: "heldcommands",
} as const;

/** Labels, annotations and finalizer named by the contract (DESIGN.md section 3). */
export const labels = {
  run: "langgraph-jit.dev/run",
  inject: "langgraph-jit.dev/inject",
} as const;
export const annotations = {
  requester: "langgraph-jit.dev/requester",
  /** On an Approval: who decided, stamped like a run's requester. */
  approver: "langgraph-jit.dev/approver",
  /** On an Approval: the uid of the run it decides, so a run recreated under the name is not. */
  runUid: "langgraph-jit.dev/run-uid",
  /** On a tagged pod: the Connections and actions it needs ("kb-api=read; kb-db=read,write"). */
  access: "langgraph-jit.dev/access",
  /** On a tagged pod: the longest one credential of it lives (default: what its policy allows). */
  maxDuration: "langgraph-jit.dev/max-duration",
  /** On a run's Job: the operator's proof that it made it (no one else can). */
  seal: "langgraph-jit.dev/seal",
} as const;
/** The ServiceAccount a run's pod runs as when no AccessPolicy names one; bound to nothing. */
export const defaultRunServiceAccount = "langgraph-jit-run";
export const revokeFinalizer = "langgraph-jit.dev/revoke";
/** Holds a Connection's deletion while a run may hold an unrevoked credential through it. */
export const connectionFinalizer = "langgraph-jit.dev/connection-in-use";

export type RunPhase = NonNullable<LangGraphRunStatus["phase"]>;
export const RunPhase = {
  Pending: "Pending",
  AwaitingApproval: "AwaitingApproval",
  Denied: "Denied",
  Running: "Running",
  Succeeded: "Succeeded",
  Failed: "Failed",
  Expired: "Expired",
  Cancelled: "Cancelled",
} as const satisfies Record<RunPhase, RunPhase>;

/** Phases a run never leaves. */
export const finishedPhases: ReadonlySet<RunPhase> = new Set([
  RunPhase.Denied,
  RunPhase.Succeeded,
  RunPhase.Failed,
  RunPhase.Expired,
  RunPhase.Cancelled,
]);

export type Requester = NonNullable<LangGraphRunStatus["requester"]> & { username: string };
export type RunAccess = LangGraphRunSpec["access"][number];
export type Action = RunAccess["actions"][number];
export type Subject = AccessPolicySpec["subjects"][number];
export type Grant = AccessPolicySpec["grants"][number];
export type RunApprovalStatus = NonNullable<LangGraphRunStatus["approval"]>;
export type ApprovalRequirement = NonNullable<RunApprovalStatus["requirements"]>[number];
export type ApprovalDecision = NonNullable<RunApprovalStatus["decisions"]>[number];

export function runKey(run: Pick<LangGraphRun, "metadata">): string {
  return `${run.metadata?.namespace}/${run.metadata?.name}`;
}

/** The run with its apiVersion and kind, which watched and listed objects may lack. */
export function typedRun(run: LangGraphRun): LangGraphRun {
  return { ...run, apiVersion, kind: "LangGraphRun" };
}

/** The names of every Secret a Connection reads: they exist for the operator alone. */
export function connectionSecretNames(connection: AnyConnection): string[] {
  const { postgres, http } = connection.spec;
  const auth = http?.auth;
  return [
    postgres?.credentials.secretRef.name,
    postgres?.caSecretRef?.name,
    http?.caSecretRef?.name,
    auth?.bearer?.secretRef.name,
    auth?.header?.secretRef.name,
    auth?.oauth2ClientCredentials?.clientSecretRef.name,
  ].filter((name): name is string => typeof name === "string" && name !== "");
}
