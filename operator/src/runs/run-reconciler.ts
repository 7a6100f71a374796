// The LangGraphRun lifecycle: Pending -> Denied | AwaitingApproval | Running -> Succeeded |
// Failed | Expired | Cancelled. Each reconcile converges from what the caches hold now.
import { isDeepStrictEqual } from "node:util";
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  NetworkingV1Api,
  type V1Job,
  type V1NetworkPolicy,
  type V1NetworkPolicyEgressRule,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { parseDuration } from "../../../api/duration.ts";
import {
  type AccessPolicy,
  type Connection,
  finishedPhases,
  group,
  type LangGraphRun,
  type LangGraphRunStatus,
  type Requester,
  RunPhase,
  resources,
  revokeFinalizer,
  typedRun,
  version,
} from "../../../api/v1alpha1.ts";
import { isConflict, isNotFound, unlessNotFound } from "../kube/api-errors.ts";
import type { Cache } from "../kube/cache.ts";
import type { EventRecorder, EventType } from "../kube/events.ts";
import { metaTime, patchAs } from "../kube/meta.ts";
import { rememberFor } from "../kube/ttl-cache.ts";
import { type AccessDecision, evaluateAccess } from "../policy/evaluate-access.ts";
import { type ConditionUpdate, setCondition } from "./conditions.ts";
import { buildJob, type SidecarSettings } from "./job-builder.ts";
import { runObjectName } from "./names.ts";
import {
  buildNetworkPolicy,
  connectionEndpoint,
  egressRules,
  type ResolverDeps,
} from "./network-policy.ts";
import { TemplateRefused } from "./pod-rules.ts";
import { requesterOf } from "./requester.ts";
import type { RunServiceAccounts } from "./run-service-account.ts";
import { isRunJob, type StatusSeal } from "./status-seal.ts";
import { reviewTemplate, type TemplateReviewDeps } from "./template-review.ts";

/** What the controller reads from its informers. */
export interface RunRevoker {
  /**
   * Makes every credential the run held on these Connections stop working. Idempotent;
   * throws to be retried.
   */
  revoke(run: LangGraphRun, connections: Connection[]): Promise<void>;
}

export interface RunReconcilerOptions {
  kc: KubeConfig;
  logger: Logger;
  events: EventRecorder;
  revoker: RunRevoker;
  runs: Cache<LangGraphRun>;
  jobs: Cache<V1Job>;
  networkPolicies: Cache<V1NetworkPolicy>;
  policies: Cache<AccessPolicy>;
  connections: Cache<Connection>;
  sidecar: Omit<SidecarSettings, "operatorCaPem">;
  /** The operator's own namespace: the webhooks do not look there, so its runs are never started. */
  operatorNamespace: string;
  seal: StatusSeal;
  templateReview: TemplateReviewDeps;
  serviceAccounts: RunServiceAccounts;
  /** The CA bundle the sidecar trusts the operator's HTTPS certificate with (it can rotate). */
  operatorCaPem: () => string;
  operatorEgress: V1NetworkPolicyEgressRule;
  resolver: Omit<ResolverDeps, "readService" | "readEndpointSlices">;
  fieldManager: string;
  now?: () => Date;
}

export type ReconcileResult = undefined | { requeueAfterMs: number };

const lookupTtlMs = 30_000;

/** Equal as JSON: listed objects are the client's model classes, watched ones plain objects. */
function sameJson(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(
    JSON.parse(JSON.stringify(a ?? null)),
    JSON.parse(JSON.stringify(b ?? null)),
  );
}

export class RunReconciler {
  readonly #o: RunReconcilerOptions;
  readonly #custom: CustomObjectsApi;
  readonly #batch: BatchV1Api;
  readonly #networking: NetworkingV1Api;
  readonly #core: CoreV1Api;
  readonly #discovery: DiscoveryV1Api;
  readonly #now: () => Date;
  readonly #resolver: ResolverDeps;
  readonly #ignored = new Set<string>();

  constructor(options: RunReconcilerOptions) {
    this.#o = options;
    this.#custom = options.kc.makeApiClient(CustomObjectsApi);
    this.#batch = options.kc.makeApiClient(BatchV1Api);
    this.#networking = options.kc.makeApiClient(NetworkingV1Api);
    this.#core = options.kc.makeApiClient(CoreV1Api);
    this.#discovery = options.kc.makeApiClient(DiscoveryV1Api);
    this.#now = options.now ?? (() => new Date());
    // Runs sharing a Connection share its lookups for a while (docs/networking.md).
    const readService = (namespace: string, name: string) =>
      unlessNotFound(this.#core.readNamespacedService({ namespace, name }));
    const readEndpointSlices = async (namespace: string, service: string) =>
      (
        await this.#discovery.listNamespacedEndpointSlice({
          namespace,
          labelSelector: `kubernetes.io/service-name=${service}`,
        })
      ).items;
    this.#resolver = {
      clusterDomain: options.resolver.clusterDomain,
      readService: rememberFor(lookupTtlMs, readService),
      readEndpointSlices: rememberFor(lookupTtlMs, readEndpointSlices),
      resolveHost: rememberFor(lookupTtlMs, options.resolver.resolveHost),
    };
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace = "", name = ""] = key.split("/");
    const run = this.#o.runs.get(namespace, name);
    if (!run) return;
    const log = this.#o.logger.child({ run: key });
    if (namespace === this.#o.operatorNamespace) return this.#ignoreInOperatorNamespace(run, log);
    if (run.metadata?.deletionTimestamp) return this.#finalize(run, log);
    if (!run.metadata?.finalizers?.includes(revokeFinalizer)) {
      await this.#addFinalizer(run);
      return;
    }
    if (!this.#o.seal.statusIsTrusted(run)) {
      return this.#finish(
        run,
        RunPhase.Failed,
        "StatusNotSealed",
        `phase ${run.status?.phase} was not set by langgraph-jit (its seal does not match): the run is not trusted to hold a credential`,
        log,
      );
    }
    const phase = run.status?.phase ?? RunPhase.Pending;
    if (phase === RunPhase.Pending) return this.#authorize(run, log);
    if (phase === RunPhase.Running) return this.#track(run, log);
    if (finishedPhases.has(phase)) return this.#ensureRevoked(run, log);
  }

  /** Says once per run why it never starts: no webhook stamped or checked it. */
  async #ignoreInOperatorNamespace(run: LangGraphRun, log: Logger): Promise<undefined> {
    const uid = run.metadata?.uid ?? "";
    if (this.#ignored.has(uid)) return;
    if (this.#ignored.size >= 10_000) this.#ignored.clear();
    this.#ignored.add(uid);
    const message = `runs in langgraph-jit's own namespace ${this.#o.operatorNamespace} are never started: its admission webhooks do not look there, so no requester is stamped`;
    log.warn(message);
    await this.#event(run, "Warning", "NotReconciled", "Authorize", message);
  }

  // Pending: decide from policy and review the pod as the requester, then deny, wait for
  // approval, or start.
  async #authorize(run: LangGraphRun, log: Logger): Promise<ReconcileResult> {
    const requester = requesterOf(run);
    if (!requester) {
      return this.#deny(
        run,
        log,
        "RequesterUnknown",
        "the run has no valid langgraph-jit.dev/requester annotation: it was created without the admission webhook",
      );
    }
    const decision = this.#decide(run, requester);
    if (!decision.allowed) return this.#deny(run, log, decision.reason, decision.message);
    const refused = await this.#reviewTemplate(run, requester, decision.serviceAccount);
    if (refused) return this.#deny(run, log, "TemplateRefused", refused);

    const policies = [...new Set(decision.grants.map((g) => g.policy))].join(", ");
    const authorized: ConditionUpdate = {
      type: "Authorized",
      status: "True",
      reason: "Granted",
      message: `granted by AccessPolicy ${policies}`,
    };
    const now = this.#now();
    if (decision.runApprovers.length > 0) {
      const approvers = decision.runApprovers.map((s) => `${s.kind} ${s.name}`).join(", ");
      await this.#writeStatus(run, RunPhase.AwaitingApproval, { requester }, [
        authorized,
        {
          type: "Approved",
          status: "Unknown",
          reason: "AwaitingApproval",
          message: `waiting for ${approvers}`,
        },
        {
          type: "Ready",
          status: "False",
          reason: "AwaitingApproval",
          message: `waiting for ${approvers}`,
        },
      ]);
      await this.#event(
        run,
        "Normal",
        "AwaitingApproval",
        "Authorize",
        `access needs approval by ${approvers}`,
      );
      return;
    }
    const deadline = new Date(now.getTime() + parseDuration(run.spec.maxDuration));
    // The deadline is fixed in status before anything runs, so a restart cannot extend it.
    await this.#writeStatus(
      run,
      RunPhase.Running,
      { requester, startedAt: metaTime(now), deadline: metaTime(deadline) },
      [
        authorized,
        { type: "Ready", status: "False", reason: "Starting", message: "creating the run's Job" },
      ],
    );
    log.info({ requester: requester.username, policies }, "run authorized");
    await this.#event(
      run,
      "Normal",
      "Authorized",
      "Authorize",
      `${requester.username}: ${authorized.message}`,
    );
    return { requeueAfterMs: 0 };
  }

  #decide(run: LangGraphRun, requester: Requester): AccessDecision {
    const namespace = run.metadata?.namespace ?? "";
    return evaluateAccess({
      namespace,
      requester,
      access: run.spec.access,
      maxDurationMs: parseDuration(run.spec.maxDuration),
      policies: this.#o.policies.list(namespace),
      connections: this.#o.connections.list(namespace),
    });
  }

  /** Why the run's pod template may not run as its requester, or undefined when it may. */
  async #reviewTemplate(
    run: LangGraphRun,
    requester: Requester,
    serviceAccount: string,
  ): Promise<string | undefined> {
    const namespace = run.metadata?.namespace ?? "";
    try {
      await reviewTemplate(
        {
          template: run.spec.template,
          namespace,
          requester,
          serviceAccounts: new Set([serviceAccount]),
          connections: this.#o.connections.list(namespace),
        },
        this.#o.templateReview,
      );
      return undefined;
    } catch (error) {
      if (error instanceof TemplateRefused) return `spec.template.${error.message}`;
      throw error;
    }
  }

  async #deny(run: LangGraphRun, log: Logger, reason: string, message: string): Promise<undefined> {
    const requester = requesterOf(run);
    await this.#writeStatus(run, RunPhase.Denied, requester ? { requester } : {}, [
      { type: "Authorized", status: "False", reason, message },
      { type: "Ready", status: "False", reason: "Denied", message },
    ]);
    log.info({ reason, message }, "run denied");
    await this.#event(run, "Warning", "Denied", "Authorize", message);
  }

  // Running: the Job and NetworkPolicy exist, the deadline holds, the Job's outcome is the run's.
  async #track(run: LangGraphRun, log: Logger): Promise<ReconcileResult> {
    const namespace = run.metadata?.namespace ?? "";
    const now = this.#now();
    const deadline = Date.parse(run.status?.deadline ?? "");
    const expire = () =>
      this.#finish(
        run,
        RunPhase.Expired,
        "DeadlineExceeded",
        "the run reached its maxDuration",
        log,
      );
    if (!(deadline > now.getTime())) return expire();
    const jobName = runObjectName(run);
    await this.#ensureNetworkPolicy(run, jobName);
    const job =
      this.#o.jobs.get(namespace, jobName) ??
      (await unlessNotFound(this.#batch.readNamespacedJob({ namespace, name: jobName })));
    if (!job) {
      if (run.status?.jobUID) {
        return this.#finish(run, RunPhase.Failed, "JobDeleted", `Job ${jobName} was deleted`, log);
      }
      return this.#createJob(run, jobName, deadline - now.getTime(), log);
    }
    if (!isRunJob(run, job, this.#o.seal)) {
      return this.#finish(
        run,
        RunPhase.Failed,
        "JobConflict",
        `Job ${jobName} exists and was not created by langgraph-jit for this run: it gets no credential`,
        log,
      );
    }
    const jobConditions = job.status?.conditions ?? [];
    const complete = jobConditions.find((c) => c.type === "Complete" && c.status === "True");
    const failed = jobConditions.find((c) => c.type === "Failed" && c.status === "True");
    if (complete)
      return this.#finish(run, RunPhase.Succeeded, "JobComplete", "the graph completed", log);
    if (failed?.reason === "DeadlineExceeded") return expire();
    if (failed) {
      const why = failed.message || failed.reason || "the Job failed";
      return this.#finish(run, RunPhase.Failed, "JobFailed", why, log);
    }
    await this.#markJobRunning(run, job);
    return { requeueAfterMs: deadline - now.getTime() };
  }

  async #markJobRunning(run: LangGraphRun, job: V1Job): Promise<void> {
    const jobName = job.metadata?.name ?? "";
    await this.#writeStatus(run, RunPhase.Running, { jobName, jobUID: job.metadata?.uid }, [
      {
        type: "Ready",
        status: "True",
        reason: "JobCreated",
        message: `Job ${jobName} is running the graph`,
      },
    ]);
  }

  /**
   * Creates the run's Job once its grant, its pod template as the requester and its
   * ServiceAccount still hold: any of them may have changed since the run was authorized.
   */
  async #createJob(
    run: LangGraphRun,
    jobName: string,
    remainingMs: number,
    log: Logger,
  ): Promise<ReconcileResult> {
    const namespace = run.metadata?.namespace ?? "";
    const fail = (reason: string, message: string) =>
      this.#finish(run, RunPhase.Failed, reason, message, log);
    const requester = requesterOf(run);
    if (!requester) return fail("RequesterUnknown", "the run has no valid requester");
    const decision = this.#decide(run, requester);
    if (!decision.allowed) {
      return fail(decision.reason, `the run's grant no longer holds: ${decision.message}`);
    }
    const refused = await this.#reviewTemplate(run, requester, decision.serviceAccount);
    if (refused) return fail("TemplateRefused", refused);
    const missing = await this.#o.serviceAccounts.ensure(namespace, decision.serviceAccount);
    if (missing) return fail("ServiceAccountNotFound", missing);

    const job = buildJob({
      run,
      connections: decision.grants.map((g) => g.connection),
      sidecar: { ...this.#o.sidecar, operatorCaPem: this.#o.operatorCaPem() },
      jobName,
      serviceAccount: decision.serviceAccount,
      seal: this.#o.seal.ofJob(run, jobName),
      activeDeadlineSeconds: Math.max(1, Math.ceil(remainingMs / 1000)),
    });
    let created: V1Job;
    try {
      created = await this.#batch.createNamespacedJob({
        namespace,
        body: job,
        fieldManager: this.#o.fieldManager,
      });
    } catch (error) {
      if (!isConflict(error)) throw error;
      // Ours from an earlier attempt, or someone else's: the next reconcile tells them apart.
      return { requeueAfterMs: 0 };
    }
    log.info({ job: jobName }, "created the run's Job");
    await this.#event(run, "Normal", "JobCreated", "Start", `created Job ${jobName}`);
    await this.#markJobRunning(run, created);
    return { requeueAfterMs: remainingMs };
  }

  async #ensureNetworkPolicy(run: LangGraphRun, name: string): Promise<void> {
    const namespace = run.metadata?.namespace ?? "";
    const deps = this.#resolver;
    const rules = [];
    for (const access of run.spec.access) {
      const connection = this.#o.connections.get(namespace, access.connection);
      if (!connection) continue;
      rules.push(...(await egressRules(connectionEndpoint(connection), namespace, deps)));
    }
    const desired = buildNetworkPolicy(run, name, rules, this.#o.operatorEgress);
    const current = this.#o.networkPolicies.get(namespace, name);
    if (current && sameJson(current.spec, desired.spec)) return;
    await this.#networking.patchNamespacedNetworkPolicy(
      { namespace, name, body: desired, fieldManager: this.#o.fieldManager, force: true },
      patchAs.apply,
    );
  }

  // Revocation comes before the terminal status, so a finished run's status always says when
  // its credentials were revoked; a crash in between repeats the (idempotent) revocation.
  async #finish(
    run: LangGraphRun,
    phase: RunPhase,
    reason: string,
    message: string,
    log: Logger,
  ): Promise<undefined> {
    const namespace = run.metadata?.namespace ?? "";
    if (phase === RunPhase.Expired || phase === RunPhase.Cancelled) {
      await this.#deleteJob(namespace, runObjectName(run));
    }
    const credential = await this.#revoke(run, log);
    await this.#writeStatus(
      run,
      phase,
      {
        completedAt: run.status?.completedAt ?? metaTime(this.#now()),
        ...(credential ? { credential } : {}),
      },
      [
        { type: "Ready", status: "False", reason: phase, message },
        { type: "Complete", status: "True", reason, message },
      ],
    );
    log.info({ phase, reason }, "run finished");
    await this.#event(
      run,
      phase === RunPhase.Succeeded ? "Normal" : "Warning",
      phase,
      "Finish",
      message,
    );
  }

  async #deleteJob(namespace: string, name: string): Promise<void> {
    try {
      // Background propagation: the Job's pods go too, ending the graph and its sidecar.
      await this.#batch.deleteNamespacedJob({ namespace, name, propagationPolicy: "Background" });
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  /** A finished run whose credentials were not yet revoked (a Running run never finished by us). */
  async #ensureRevoked(run: LangGraphRun, log: Logger): Promise<undefined> {
    const credential = await this.#revoke(run, log);
    if (credential)
      await this.#writeStatus(run, run.status?.phase ?? RunPhase.Pending, { credential }, []);
  }

  /** Revokes a started run's credentials once; returns the credential status to record. */
  async #revoke(run: LangGraphRun, log: Logger): Promise<LangGraphRunStatus["credential"]> {
    if (!run.status?.startedAt || run.status.credential?.revokedAt) return undefined;
    const namespace = run.metadata?.namespace ?? "";
    const found = run.spec.access.map((a) => ({
      name: a.connection,
      connection: this.#o.connections.get(namespace, a.connection),
    }));
    const connections = found.flatMap((f) => f.connection ?? []);
    const gone = found.filter((f) => !f.connection).map((f) => f.name);
    await this.#o.revoker.revoke(run, connections);
    if (gone.length === 0) {
      log.info("run credentials revoked");
      await this.#event(
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
      await this.#event(run, "Warning", "CredentialsRevoked", "Revoke", message);
    }
    return { ...run.status.credential, revokedAt: metaTime(this.#now()) };
  }

  // Deletion: an active run is Cancelled, its Job removed and its credentials revoked before
  // the finalizer lets it go.
  async #finalize(run: LangGraphRun, log: Logger): Promise<ReconcileResult> {
    const finalizers = run.metadata?.finalizers ?? [];
    const index = finalizers.indexOf(revokeFinalizer);
    if (index < 0) return;
    const namespace = run.metadata?.namespace ?? "";
    // Only a Running run has a Job; finishing it as Cancelled removes the Job and revokes.
    if (run.status?.phase === RunPhase.Running) {
      await this.#finish(
        run,
        RunPhase.Cancelled,
        "Deleted",
        "the run was deleted while active",
        log,
      );
    } else {
      await this.#ensureRevoked(run, log);
    }
    // The garbage collector would remove it too, but on its own schedule.
    await this.#networking
      .deleteNamespacedNetworkPolicy({ namespace, name: runObjectName(run) })
      .catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
    try {
      await this.#custom.patchNamespacedCustomObject(
        {
          group,
          version,
          namespace,
          plural: resources.runs,
          name: run.metadata?.name ?? "",
          body: [
            { op: "test", path: `/metadata/finalizers/${index}`, value: revokeFinalizer },
            { op: "remove", path: `/metadata/finalizers/${index}` },
          ],
        },
        patchAs.json,
      );
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  async #addFinalizer(run: LangGraphRun): Promise<void> {
    const finalizers = run.metadata?.finalizers;
    const body = finalizers
      ? [
          { op: "test", path: "/metadata/resourceVersion", value: run.metadata?.resourceVersion },
          { op: "add", path: "/metadata/finalizers/-", value: revokeFinalizer },
        ]
      : [{ op: "add", path: "/metadata/finalizers", value: [revokeFinalizer] }];
    await this.#custom.patchNamespacedCustomObject(
      {
        group,
        version,
        namespace: run.metadata?.namespace ?? "",
        plural: resources.runs,
        name: run.metadata?.name ?? "",
        body,
      },
      patchAs.json,
    );
  }

  /**
   * Writes status only when it differs, guarded by the resourceVersion read (a 409 re-queues
   * the run quietly). Returns the run as it now stands.
   */
  async #writeStatus(
    run: LangGraphRun,
    phase: RunPhase,
    fields: Partial<LangGraphRunStatus>,
    conditions: ConditionUpdate[],
  ): Promise<LangGraphRun> {
    const now = metaTime(this.#now());
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
    status.seal = this.#o.seal.ofStatus(run.metadata?.uid ?? "", status);
    if (isDeepStrictEqual(status, run.status)) return run;
    const updated = (await this.#custom.patchNamespacedCustomObjectStatus(
      {
        group,
        version,
        namespace: run.metadata?.namespace ?? "",
        plural: resources.runs,
        name: run.metadata?.name ?? "",
        body: { metadata: { resourceVersion: run.metadata?.resourceVersion }, status },
      },
      patchAs.merge,
    )) as LangGraphRun;
    return updated;
  }

  async #event(run: LangGraphRun, type: EventType, reason: string, action: string, note: string) {
    await this.#o.events.record(typedRun(run), type, reason, action, note);
  }
}
