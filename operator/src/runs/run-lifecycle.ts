// What every phase of a LangGraphRun's lifecycle does alike: decide access, review the pod
// template, write status (sealed), record Events, and end the run with its credentials revoked.
// The phases themselves live in pending-run.ts, awaiting-approval.ts, running-run.ts and
// deleted-run.ts; run-reconciler.ts hands each run to its phase.
import { isDeepStrictEqual } from "node:util";
import type { V1NetworkPolicyEgressRule } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { parseDuration } from "../../../api/duration.ts";
import type { ApprovalRecord } from "../../../api/session-events.ts";
import {
  type AnyConnection,
  type LangGraphRun,
  type LangGraphRunStatus,
  type Requester,
  RunPhase,
  typedRun,
} from "../../../api/v1alpha1.ts";
import type { ClusterObjects } from "../kube/cluster-cache.ts";
import type { ReconcileResult } from "../kube/controller.ts";
import type { EventSink, EventType } from "../kube/events.ts";
import type { Finalizers } from "../kube/finalizers.ts";
import { metaTime } from "../kube/meta.ts";
import type { ApprovalNotifier, NoticeState } from "../notifications/approval-notices.ts";
import { type AccessDecision, evaluateAccess } from "../policy/evaluate-access.ts";
import { connectionsIn, connectionsToRevoke } from "../policy/namespace-connections.ts";
import { type ConditionUpdate, setCondition } from "./conditions.ts";
import type { SidecarSettings } from "./job-builder.ts";
import { runObjectName } from "./names.ts";
import type { ResolverDeps } from "./network-policy.ts";
import { TemplateRefused } from "./pod-rules.ts";
import { requesterOf } from "./requester.ts";
import type { RunStatusWriter } from "./run-status-writer.ts";
import type { RunWorkloads } from "./run-workloads.ts";
import type { StatusSeal } from "./status-seal.ts";
import { reviewTemplate, type TemplateReviewDeps } from "./template-review.ts";

export interface RunRevoker {
  /**
   * Makes every credential the run held on these Connections stop working. Idempotent;
   * throws to be retried.
   */
  revoke(run: LangGraphRun, connections: AnyConnection[]): Promise<void>;
}

/** Where the run's own approval decision goes into its session, as the operator's seq-0 event. */
export interface RunSessionLog {
  /** Records it; a failure is logged, never thrown: the decision stands either way. */
  recordApproval(run: LangGraphRun, approval: ApprovalRecord): Promise<void>;
}

export interface ServiceAccountEnsurer {
  /** Makes sure the account exists; returns why the run cannot start when it cannot. */
  ensure(namespace: string, name: string): Promise<string | undefined>;
}

/** Everything the lifecycle reads and writes: the caches, and narrow writers tests replace. */
export interface RunLifecycleDeps {
  logger: Logger;
  cache: Pick<
    ClusterObjects,
    | "runs"
    | "jobs"
    | "networkPolicies"
    | "policies"
    | "connections"
    | "clusterConnections"
    | "namespaces"
    | "approvals"
    | "taggedPods"
  >;
  status: RunStatusWriter;
  finalizers: Finalizers;
  workloads: RunWorkloads;
  events: EventSink;
  /** Tells the webhooks of the policies asking for a run's approval what waits and how it ended. */
  notifier: ApprovalNotifier;
  sessions: RunSessionLog;
  revoker: RunRevoker;
  serviceAccounts: ServiceAccountEnsurer;
  seal: StatusSeal;
  templateReview: TemplateReviewDeps;
  sidecar: Omit<SidecarSettings, "operatorCaPem">;
  /** The CA bundle the sidecar trusts the operator's HTTPS certificate with (it can rotate). */
  operatorCaPem: () => string;
  operatorEgress: V1NetworkPolicyEgressRule;
  /** The operator's own namespace: the webhooks do not look there, so its runs are never started. */
  operatorNamespace: string;
  resolver: ResolverDeps;
  now?: () => Date;
}

export class RunLifecycle {
  readonly deps: RunLifecycleDeps;
  readonly now: () => Date;

  constructor(deps: RunLifecycleDeps) {
    this.deps = deps;
    this.now = deps.now ?? (() => new Date());
  }

  /** What the run's namespace's policies grant its requester now. */
  decide(run: LangGraphRun, requester: Requester): AccessDecision {
    const namespace = run.metadata?.namespace ?? "";
    return evaluateAccess({
      namespace,
      requester,
      access: run.spec.access,
      maxDurationMs: parseDuration(run.spec.maxDuration),
      policies: this.deps.cache.policies.list(namespace),
      ...connectionsIn(this.deps.cache, namespace),
    });
  }

  /** Why the run's pod template may not run as its requester, or undefined when it may. */
  async reviewTemplate(
    run: LangGraphRun,
    requester: Requester,
    serviceAccount: string,
  ): Promise<string | undefined> {
    const namespace = run.metadata?.namespace ?? "";
    if (!run.spec.template) return "spec.template: the run has no pod template";
    try {
      await reviewTemplate(
        {
          template: run.spec.template,
          namespace,
          requester,
          serviceAccounts: new Set([serviceAccount]),
          connections: this.deps.cache.connections.list(namespace),
        },
        this.deps.templateReview,
      );
      return undefined;
    } catch (error) {
      if (error instanceof TemplateRefused) return `spec.template.${error.message}`;
      throw error;
    }
  }

  /**
   * Starts the run: Running, with its deadline fixed in status (counted from now, after any
   * approval) before anything runs, so a restart cannot extend it.
   */
  async start(
    run: LangGraphRun,
    requester: Requester,
    fields: Partial<LangGraphRunStatus>,
    conditions: ConditionUpdate[],
  ): Promise<ReconcileResult> {
    const now = this.now();
    const deadline = new Date(now.getTime() + parseDuration(run.spec.maxDuration));
    await this.writeStatus(
      run,
      RunPhase.Running,
      { ...fields, requester, startedAt: metaTime(now), deadline: metaTime(deadline) },
      [
        ...conditions,
        {
          type: "Ready",
          status: "False",
          reason: "Starting",
          message: run.spec.source
            ? "the pod's sidecar may fetch its credential"
            : "creating the run's Job",
        },
      ],
    );
    return { requeueAfterMs: 0 };
  }

  async deny(
    run: LangGraphRun,
    log: Logger,
    reason: string,
    message: string,
    fields: Partial<LangGraphRunStatus> = {},
    conditions: ConditionUpdate[] = [],
  ): Promise<undefined> {
    const requester = requesterOf(run);
    await this.writeStatus(
      run,
      RunPhase.Denied,
      { ...fields, ...(requester ? { requester } : {}) },
      [
        { type: "Authorized", status: "False", reason, message },
        ...conditions,
        { type: "Ready", status: "False", reason: "Denied", message },
      ],
    );
    log.info({ reason, message }, "run denied");
    await this.event(run, "Warning", "Denied", "Authorize", message);
  }

  // Revocation comes before the terminal status, so a finished run's status always says when
  // its credentials were revoked; a crash in between repeats the (idempotent) revocation.
  async finish(
    run: LangGraphRun,
    phase: RunPhase,
    reason: string,
    message: string,
    log: Logger,
  ): Promise<undefined> {
    if (phase === RunPhase.Expired || phase === RunPhase.Cancelled) {
      // Its pods go too, ending the graph and its sidecar.
      await this.deps.workloads.deleteJob(run.metadata?.namespace ?? "", runObjectName(run));
    }
    const credential = await this.#revoke(run, log);
    await this.writeStatus(
      run,
      phase,
      {
        completedAt: run.status?.completedAt ?? metaTime(this.now()),
        ...(credential ? { credential } : {}),
      },
      [
        { type: "Ready", status: "False", reason: phase, message },
        { type: "Complete", status: "True", reason, message },
      ],
    );
    log.info({ phase, reason }, "run finished");
    await this.event(
      run,
      phase === RunPhase.Succeeded ? "Normal" : "Warning",
      phase,
      "Finish",
      message,
    );
  }

  /** A finished run whose credentials were not yet revoked (a Running run never finished by us). */
  async ensureRevoked(run: LangGraphRun, log: Logger): Promise<undefined> {
    const credential = await this.#revoke(run, log);
    if (credential)
      await this.writeStatus(run, run.status?.phase ?? RunPhase.Pending, { credential }, []);
  }

  /** Revokes a started run's credentials once; returns the credential status to record. */
  async #revoke(run: LangGraphRun, log: Logger): Promise<LangGraphRunStatus["credential"]> {
    if (!run.status?.startedAt || run.status.credential?.revokedAt) return undefined;
    const namespace = run.metadata?.namespace ?? "";
    const found = run.spec.access.map((a) => ({
      name: a.connection,
      meant: connectionsToRevoke(this.deps.cache, namespace, a.connection),
    }));
    const connections = found.flatMap((f) => f.meant);
    const gone = found.filter((f) => f.meant.length === 0).map((f) => f.name);
    await this.deps.revoker.revoke(run, connections);
    if (gone.length === 0) {
      log.info("run credentials revoked");
      await this.event(
        run,
        "Normal",
        "CredentialsRevoked",
        "Revoke",
        "every credential of the run was revoked",
      );
    } else {
      // Nothing is left to reach them with: the role's VALID UNTIL and the token's expiry bound them.
      const message = `the run's credentials were revoked except on deleted Connection(s) ${gone.join(", ")}: what was minted there lasts until the run's deadline or its own expiry`;
      log.warn({ connections: gone }, message);
      await this.event(run, "Warning", "CredentialsRevoked", "Revoke", message);
    }
    return { ...run.status.credential, revokedAt: metaTime(this.now()) };
  }

  /**
   * Writes status, sealed, only when it differs, guarded by the resourceVersion read (a 409
   * re-queues the run quietly). Returns the run as it now stands.
   */
  async writeStatus(
    run: LangGraphRun,
    phase: RunPhase,
    fields: Partial<LangGraphRunStatus>,
    conditions: ConditionUpdate[],
  ): Promise<LangGraphRun> {
    const now = metaTime(this.now());
    const generation = run.metadata?.generation;
    const status: LangGraphRunStatus = {
      ...run.status,
      ...fields,
      phase,
      observedGeneration: generation,
      conditions: conditions.reduce(
        (all, update) => setCondition(all, update, generation, now),
        run.status?.conditions ?? [],
      ),
    };
    status.seal = this.deps.seal.ofStatus(run.metadata?.uid ?? "", status);
    if (isDeepStrictEqual(status, run.status)) return run;
    return this.deps.status.write(run, status);
  }

  async event(
    run: LangGraphRun,
    type: EventType,
    reason: string,
    action: string,
    note: string,
  ): Promise<void> {
    await this.deps.events.record(typedRun(run), type, reason, action, note);
  }

  /**
   * Tells the webhooks of the policies asking for the run's approval that it waits, or how it
   * was decided; a decision also goes into the run's session.
   */
  async announceApproval(
    run: LangGraphRun,
    state: NoticeState,
    message: string,
    policies = (run.status?.approval?.requirements ?? []).map((r) => r.policy),
  ): Promise<void> {
    if (state !== "Waiting")
      await this.deps.sessions.recordApproval(run, { decision: state, message });
    const name = run.metadata?.name ?? "";
    const access = run.spec.access.map((a) => `${a.connection}: ${a.actions.join(", ")}`);
    this.deps.notifier.notify(policies, {
      state,
      namespace: run.metadata?.namespace ?? "",
      kind: "LangGraphRun",
      name,
      run: name,
      requester: requesterOf(run)?.username ?? "",
      request: `${run.spec.reason || "no reason given"} (${access.join("; ")})`,
      message,
    });
  }
}
