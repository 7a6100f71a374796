// The LangGraphRun lifecycle: Pending -> Denied | AwaitingApproval | Running -> Succeeded |
// Failed | Expired | Cancelled. Each reconcile converges from what the caches hold now.
import { isDeepStrictEqual } from "node:util";
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
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
  RunPhase,
  resources,
  revokeFinalizer,
  typedRun,
  version,
} from "../../../api/v1alpha1.ts";
import { requesterOf } from "../admission/run-admission.ts";
import type { RunRevoker } from "../credentials/revoker.ts";
import type { EventRecorder, EventType } from "../events.ts";
import { isConflict, isNotFound, unlessNotFound } from "../kube/api-errors.ts";
import { metaTime, patchAs } from "../kube/meta.ts";
import { evaluateAccess } from "../policy/evaluate-access.ts";
import { rememberFor } from "../ttl-cache.ts";
import { type ConditionUpdate, setCondition } from "./conditions.ts";
import { buildJob, checkTemplate, type SidecarSettings, TemplateRefused } from "./job-builder.ts";
import { runObjectName } from "./names.ts";
import {
  buildNetworkPolicy,
  connectionEndpoint,
  type ResolverDeps,
  resolvePeers,
} from "./network-policy.ts";

/** What the controller reads from its informers. */
export interface Cache<T> {
  get(namespace: string, name: string): T | undefined;
  list(namespace?: string): T[];
}

export interface RunControllerOptions {
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
  /** The CA bundle the sidecar trusts the operator's HTTPS certificate with (it can rotate). */
  operatorCaPem: () => string;
  operatorEgress: V1NetworkPolicyEgressRule;
  resolver: Omit<ResolverDeps, "readService">;
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

export class RunController {
  readonly #o: RunControllerOptions;
  readonly #custom: CustomObjectsApi;
  readonly #batch: BatchV1Api;
  readonly #networking: NetworkingV1Api;
  readonly #core: CoreV1Api;
  readonly #now: () => Date;
  readonly #resolver: ResolverDeps;

  constructor(options: RunControllerOptions) {
    this.#o = options;
    this.#custom = options.kc.makeApiClient(CustomObjectsApi);
    this.#batch = options.kc.makeApiClient(BatchV1Api);
    this.#networking = options.kc.makeApiClient(NetworkingV1Api);
    this.#core = options.kc.makeApiClient(CoreV1Api);
    this.#now = options.now ?? (() => new Date());
    // Runs sharing a Connection share its lookups for a while (docs/networking.md).
    const readService = (namespace: string, name: string) =>
      unlessNotFound(this.#core.readNamespacedService({ namespace, name }));
    this.#resolver = {
      clusterDomain: options.resolver.clusterDomain,
      readService: rememberFor(lookupTtlMs, readService),
      resolveHost: rememberFor(lookupTtlMs, options.resolver.resolveHost),
    };
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace = "", name = ""] = key.split("/");
    const run = this.#o.runs.get(namespace, name);
    if (!run) return;
    const log = this.#o.logger.child({ run: key });
    if (run.metadata?.deletionTimestamp) return this.#finalize(run, log);
    if (!run.metadata?.finalizers?.includes(revokeFinalizer)) {
      await this.#addFinalizer(run);
      return;
    }
    const phase = run.status?.phase ?? RunPhase.Pending;
    if (phase === RunPhase.Pending) return this.#authorize(run, log);
    if (phase === RunPhase.Running) return this.#track(run, log);
    if (finishedPhases.has(phase)) return this.#ensureRevoked(run, log);
  }

  // Pending: decide from policy, then either deny, wait for approval, or start.
  async #authorize(run: LangGraphRun, log: Logger): Promise<ReconcileResult> {
    const namespace = run.metadata?.namespace ?? "";
    const requester = requesterOf(run);
    if (!requester) {
      return this.#deny(
        run,
        log,
        "RequesterUnknown",
        "the run has no valid langgraph-jit.dev/requester annotation: it was created without the admission webhook",
      );
    }
    try {
      if (run.spec.template.spec) checkTemplate(run.spec.template.spec, this.#o.sidecar.uid);
    } catch (error) {
      if (error instanceof TemplateRefused)
        return this.#deny(run, log, "TemplateRefused", error.message);
      throw error;
    }
    const maxDurationMs = parseDuration(run.spec.maxDuration);
    const decision = evaluateAccess({
      namespace,
      requester,
      access: run.spec.access,
      maxDurationMs,
      policies: this.#o.policies.list(namespace),
      connections: this.#o.connections.list(namespace),
    });
    if (!decision.allowed) return this.#deny(run, log, decision.reason, decision.message);

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
    const deadline = new Date(now.getTime() + maxDurationMs);
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
      if (run.status?.jobName) {
        return this.#finish(run, RunPhase.Failed, "JobDeleted", `Job ${jobName} was deleted`, log);
      }
      return this.#createJob(run, jobName, deadline - now.getTime(), log);
    }
    if (job.metadata?.ownerReferences?.find((o) => o.controller)?.uid !== run.metadata?.uid) {
      return this.#finish(
        run,
        RunPhase.Failed,
        "JobConflict",
        `Job ${jobName} exists and is not this run's`,
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
    await this.#markJobRunning(run, jobName);
    return { requeueAfterMs: deadline - now.getTime() };
  }

  async #markJobRunning(run: LangGraphRun, jobName: string): Promise<void> {
    await this.#writeStatus(run, RunPhase.Running, { jobName }, [
      {
        type: "Ready",
        status: "True",
        reason: "JobCreated",
        message: `Job ${jobName} is running the graph`,
      },
    ]);
  }

  async #createJob(
    run: LangGraphRun,
    jobName: string,
    remainingMs: number,
    log: Logger,
  ): Promise<ReconcileResult> {
    const namespace = run.metadata?.namespace ?? "";
    const connections = run.spec.access.map((a) =>
      this.#o.connections.get(namespace, a.connection),
    );
    if (connections.some((c) => !c)) {
      // A Connection vanished between authorization and start: the grant no longer holds.
      return this.#finish(
        run,
        RunPhase.Failed,
        "ConnectionNotFound",
        "a Connection of the run was deleted",
        log,
      );
    }
    const job = buildJob({
      run,
      connections: connections as Connection[],
      sidecar: { ...this.#o.sidecar, operatorCaPem: this.#o.operatorCaPem() },
      jobName,
      activeDeadlineSeconds: Math.max(1, Math.ceil(remainingMs / 1000)),
    });
    try {
      await this.#batch.createNamespacedJob({
        namespace,
        body: job,
        fieldManager: this.#o.fieldManager,
      });
      log.info({ job: jobName }, "created the run's Job");
      await this.#event(run, "Normal", "JobCreated", "Start", `created Job ${jobName}`);
    } catch (error) {
      if (!isConflict(error)) throw error;
    }
    await this.#markJobRunning(run, jobName);
    return { requeueAfterMs: remainingMs };
  }

  async #ensureNetworkPolicy(run: LangGraphRun, name: string): Promise<void> {
    const namespace = run.metadata?.namespace ?? "";
    const deps = this.#resolver;
    const targets = [];
    for (const access of run.spec.access) {
      const connection = this.#o.connections.get(namespace, access.connection);
      if (!connection) continue;
      const endpoint = connectionEndpoint(connection);
      targets.push({ endpoint, peers: await resolvePeers(endpoint, namespace, deps) });
    }
    const desired = buildNetworkPolicy(run, name, targets, this.#o.operatorEgress);
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
