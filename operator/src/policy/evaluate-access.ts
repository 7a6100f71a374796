// Decides whether a requester may have the access a run asks for, from the AccessPolicies of
// the run's namespace and the connections it may name. Pure: callers feed it from the caches.
import { formatDuration, parseDuration } from "../../../api/duration.ts";
import { subjectMatches } from "../../../api/subjects.ts";
import {
  type AccessPolicy,
  type Action,
  type AnyConnection,
  type ApprovalRequirement,
  defaultRunServiceAccount,
  type Grant,
  type Requester,
  type RunAccess,
} from "../../../api/v1alpha1.ts";

export interface AccessRequest {
  namespace: string;
  requester: Requester;
  access: RunAccess[];
  maxDurationMs: number;
  policies: AccessPolicy[];
  /** The connections the namespace may name (namespaceConnections). */
  connections: AnyConnection[];
  /** Names both a Connection of the namespace and an offered ClusterConnection use. */
  ambiguous?: ReadonlySet<string>;
}

/** The grant that authorizes one connection of a run. */
export interface ResolvedGrant {
  connection: AnyConnection;
  actions: Action[];
  policy: string;
  grant: Grant;
  /** The ServiceAccount that policy runs pods as. */
  serviceAccount: string;
}

/** A policy's runApproval: who may approve, how many must, and how long the run waits. */
export type RunApprovalRule = ApprovalRequirement & { timeoutMs: number };

export type DenialReason =
  | "ConnectionNotFound"
  | "ConnectionAmbiguous"
  | "InvalidAction"
  | "NotGranted"
  | "DurationExceeded"
  | "ServiceAccountConflict";

export type AccessDecision =
  | {
      allowed: true;
      grants: ResolvedGrant[];
      /** One per granting policy that requires a human approval before the run starts. */
      runApprovals: RunApprovalRule[];
      /** The ServiceAccount the run's pod runs as, as its granting policies name it. */
      serviceAccount: string;
    }
  | { allowed: false; reason: DenialReason; message: string };

const httpActions: ReadonlySet<Action> = new Set(["read", "write"]);

/**
 * A run is authorized when, for every connection it asks for, one grant of one AccessPolicy
 * whose subjects include the requester allows all the actions asked for on that connection,
 * the Connection exists, and the run's maxDuration fits that policy's.
 */
export function evaluateAccess(request: AccessRequest): AccessDecision {
  const { namespace, requester } = request;
  const who = requester.username;
  const applicable = request.policies
    .filter((policy) =>
      policy.spec.subjects.some((subject) => subjectMatches(subject, requester, namespace)),
    )
    .sort((a, b) => (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""));
  const grants: ResolvedGrant[] = [];
  const runApprovals: RunApprovalRule[] = [];

  for (const { connection: name, actions } of request.access) {
    if (request.ambiguous?.has(name)) {
      return deny(
        "ConnectionAmbiguous",
        `connection "${name}" names both a Connection in namespace "${namespace}" and a ClusterConnection offered to it: delete or rename the Connection`,
      );
    }
    const connection = request.connections.find((c) => c.metadata?.name === name);
    if (!connection) {
      return deny(
        "ConnectionNotFound",
        `connection "${name}" is neither a Connection in namespace "${namespace}" nor a ClusterConnection offered to it`,
      );
    }
    const invalid = connection.spec.http && actions.find((action) => !httpActions.has(action));
    if (invalid) {
      return deny(
        "InvalidAction",
        `connection "${name}" is an http connection: its actions are read and write, not "${invalid}"`,
      );
    }

    const offers = applicable.flatMap((policy) =>
      policy.spec.grants
        .filter((grant) => grant.connection === name)
        .map((grant) => ({ policy, grant })),
    );
    const covering = offers.filter(({ grant }) => actions.every((a) => grant.actions.includes(a)));
    if (covering.length === 0) {
      const granted = new Set(offers.flatMap(({ grant }) => grant.actions));
      const missing = actions.filter((action) => !granted.has(action));
      const message =
        missing.length > 0
          ? `no AccessPolicy in namespace "${namespace}" grants ${quoteList(missing)} on connection "${name}" to ${who}`
          : `no single AccessPolicy grant in namespace "${namespace}" allows ${quoteList(actions)} together on connection "${name}" to ${who}`;
      return deny("NotGranted", message);
    }

    const fitting = covering.find(
      ({ policy }) => parseDuration(policy.spec.maxDuration) >= request.maxDurationMs,
    );
    if (!fitting) {
      const longest = Math.max(
        ...covering.map(({ policy }) => parseDuration(policy.spec.maxDuration)),
      );
      return deny(
        "DurationExceeded",
        `maxDuration ${formatDuration(request.maxDurationMs)} exceeds the ${formatDuration(longest)} that AccessPolicy allows for connection "${name}"`,
      );
    }
    const policyName = fitting.policy.metadata?.name ?? "";
    grants.push({
      connection,
      actions,
      policy: policyName,
      grant: fitting.grant,
      serviceAccount: fitting.policy.spec.runServiceAccountName ?? defaultRunServiceAccount,
    });
    const approval = fitting.policy.spec.runApproval;
    if (approval && !runApprovals.some((r) => r.policy === policyName)) {
      runApprovals.push({
        policy: policyName,
        approvers: approval.approvers,
        approvals: approval.approvals ?? 1,
        timeoutMs: parseDuration(approval.timeout ?? "1h"),
      });
    }
  }
  const accounts = new Map(grants.map((g) => [g.serviceAccount, g.policy]));
  if (accounts.size > 1) {
    const which = [...accounts].map(([account, policy]) => `${account} (AccessPolicy ${policy})`);
    return deny(
      "ServiceAccountConflict",
      `the run's grants come from AccessPolicies that run pods as different ServiceAccounts: ${which.join(", ")}`,
    );
  }
  const [serviceAccount = defaultRunServiceAccount] = accounts.keys();
  return { allowed: true, grants, runApprovals, serviceAccount };
}

function deny(reason: DenialReason, message: string): AccessDecision {
  return { allowed: false, reason, message };
}

function quoteList(items: string[]): string {
  const quoted = items.map((item) => `"${item}"`);
  return quoted.length > 1
    ? `${quoted.slice(0, -1).join(", ")} and ${quoted.at(-1)}`
    : quoted.join("");
}
