// Issues a run's credential bundle to the one pod that proves it belongs to the run: TokenReview,
// owner chain by uid, the run Running and within its deadline, the grant still in force.
import { randomUUID } from "node:crypto";
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { BoundedCache } from "../../../api/bounded-cache.ts";
import {
  type CredentialBundle,
  type GrantClaim,
  type RunClaims,
  runTokenAudience,
  type UpstreamCredential,
} from "../../../api/credentials.ts";
import { parseDuration } from "../../../api/duration.ts";
import { errorMessage } from "../../../api/errors.ts";
import {
  type AccessPolicy,
  type AnyConnection,
  type LangGraphRun,
  typedRun,
} from "../../../api/v1alpha1.ts";
import { isConflict, isNotFound } from "../kube/api-errors.ts";
import type { Cache } from "../kube/cache.ts";
import type { EventSink } from "../kube/events.ts";
import { metaTime } from "../kube/meta.ts";
import { evaluateAccess } from "../policy/evaluate-access.ts";
import { type ConnectionCaches, connectionsIn } from "../policy/namespace-connections.ts";
import { type ConditionUpdate, findCondition, setCondition } from "../runs/conditions.ts";
import { requesterOf } from "../runs/requester.ts";
import type { RunStatusWriter } from "../runs/run-status-writer.ts";
import type { StatusSeal } from "../runs/status-seal.ts";
import { HttpError } from "../server/https-server.ts";
import { credentialRefusal, type OwnerChainDeps, runOfPod } from "./run-of-pod.ts";
import type { SigningKeys } from "./signing-keys.ts";
import type { PodIdentity, PodTokenReviewer } from "./token-review.ts";
import { mintedPerRun, type UpstreamCredentials } from "./upstream-credentials.ts";

const statusAttempts = 5;
/** How far status.credential.expiresAt may lag a refreshed credential's expiry. */
const statusSlackMs = 60_000;
const refusalEventIntervalMs = 60_000;

export interface CredentialIssuerOptions {
  /** Reads a pod or Job the cache has not seen (yet). */
  readPod(namespace: string, name: string): Promise<V1Pod | undefined>;
  readJob(namespace: string, name: string): Promise<V1Job | undefined>;
  status: RunStatusWriter;
  logger: Logger;
  events: EventSink;
  signingKeys: Pick<SigningKeys, "sign">;
  reviewer: Pick<PodTokenReviewer, "review">;
  upstream: Pick<UpstreamCredentials, "issue" | "revoke">;
  caches: ConnectionCaches & {
    runs: Cache<LangGraphRun>;
    jobs: Cache<V1Job>;
    pods: Cache<V1Pod>;
    taggedPods?: Cache<V1Pod>;
    policies: Cache<AccessPolicy>;
  };
  seal: StatusSeal;
  /** Set when the operator injects tagged pods (OwnerChainDeps.tagged). */
  tagged?: OwnerChainDeps["tagged"];
  /** The run JWT's iss: the operator URL sidecars are given. */
  issuer: string;
  /** A run JWT lives at most this long (and never past the deadline); sidecars refresh. */
  tokenTtlMs: number;
  now?: () => number;
}

/** Refusals meaning the run no longer holds a credential. */
const runEndedReasons = new Set(["Revoked", "RunNotRunning", "DeadlineExceeded", "RunNotFound"]);

/** An upstream credential that could not be made now: the sidecar retries. */
function unavailable(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  return new HttpError(503, "CredentialUnavailable", errorMessage(error), { cause: error });
}

function runName(run: LangGraphRun): string {
  return `LangGraphRun ${run.metadata?.namespace}/${run.metadata?.name}`;
}

export class CredentialIssuer {
  readonly #o: CredentialIssuerOptions;
  readonly #now: () => number;
  /** Pods and reasons recently told of a refusal, whose next Event waits a minute. */
  readonly #refusalEvents: BoundedCache<string, true>;

  constructor(options: CredentialIssuerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#refusalEvents = new BoundedCache({
      maxEntries: 10_000,
      ttlMs: refusalEventIntervalMs,
      now: this.#now,
    });
  }

  /** The bundle for the pod the token is bound to, or an HttpError saying why not. */
  async issue(podToken: string): Promise<CredentialBundle> {
    const identity = await this.#o.reviewer.review(podToken);
    let run: LangGraphRun | undefined;
    try {
      ({ run } = await runOfPod(identity, {
        readPod: (namespace, name) => {
          // The watch removes a deleted pod from the cache; a miss asks the API server.
          const cached =
            this.#o.caches.pods.get(namespace, name) ??
            this.#o.caches.taggedPods?.get(namespace, name);
          if (cached?.metadata?.uid === identity.podUid) return Promise.resolve(cached);
          return this.#o.readPod(namespace, name);
        },
        readJob: this.#o.readJob,
        jobs: this.#o.caches.jobs,
        runs: this.#o.caches.runs,
        seal: this.#o.seal,
        ...(this.#o.tagged ? { tagged: this.#o.tagged } : {}),
      }));
      return await this.#issueToRun(run, identity);
    } catch (error) {
      if (error instanceof HttpError) {
        this.#refused(identity, run, error);
        if (run && error.reason === "CredentialMisconfigured") {
          await this.#recordMisconfigured(run, error);
        }
      }
      throw error;
    }
  }

  async #issueToRun(run: LangGraphRun, identity: PodIdentity): Promise<CredentialBundle> {
    const now = this.#now();
    const refusal = credentialRefusal(run, now, this.#o.seal);
    if (refusal) throw refusal;
    const grants = this.#grants(run);
    const deadlineMs = Date.parse(run.status?.deadline ?? "");
    const tokenExpiresMs = Math.min(deadlineMs, now + this.#o.tokenTtlMs);
    const namespace = run.metadata?.namespace ?? "";
    if (tokenExpiresMs - now < 1_000) {
      throw new HttpError(403, "DeadlineExceeded", `${runName(run)} reaches its deadline now`);
    }
    const credentials: Record<string, UpstreamCredential> = {};
    const minted: AnyConnection[] = [];
    try {
      const settled = await Promise.allSettled(
        grants.map(async ({ claim, connection }) => {
          const credential = await this.#o.upstream.issue(
            run,
            connection,
            claim,
            new Date(deadlineMs),
          );
          if (mintedPerRun(connection)) minted.push(connection);
          credentials[claim.connection] = credential;
        }),
      );
      for (const result of settled) {
        if (result.status === "rejected") throw unavailable(result.reason);
      }
      const claims: RunClaims = {
        run: {
          namespace,
          name: run.metadata?.name ?? "",
          uid: run.metadata?.uid ?? "",
          deadline: run.status?.deadline ?? "",
        },
        pod: { name: identity.podName, uid: identity.podUid },
        grants: grants.map((g) => g.claim),
      };
      const token = await this.#o.signingKeys.sign(
        { ...claims },
        {
          issuer: this.#o.issuer,
          audience: runTokenAudience,
          subject: claims.run.uid,
          expiresAt: new Date(tokenExpiresMs),
          jti: randomUUID(),
        },
      );
      const expiresAtMs = Math.min(
        Math.floor(tokenExpiresMs / 1000) * 1000,
        ...Object.values(credentials).map((c) =>
          c.type === "http" && c.expiresAt ? Date.parse(c.expiresAt) : Number.POSITIVE_INFINITY,
        ),
      );
      const runKey = `${namespace}/${run.metadata?.name}`;
      // Status and Events say which credential the run holds, not every refresh: they are
      // written when another pod holds it, its expiry moves, or something was minted. That
      // write is a compare-and-swap on the run, so what was minted for a run that ended
      // meanwhile is undone below.
      if (minted.length > 0 || statusIsStale(run, identity, expiresAtMs)) {
        await this.#recordIssued(run, identity, now, expiresAtMs);
        void this.#o.events.record(
          typedRun(run),
          "Normal",
          "CredentialIssued",
          "Issue",
          `issued to pod ${identity.podName}, expires at ${metaTime(expiresAtMs)}`,
        );
      }
      this.#o.logger.info({ run: runKey, pod: identity.podName }, "credential issued");
      return { token, expiresAt: metaTime(expiresAtMs), credentials };
    } catch (error) {
      // What was minted for a run that ended meanwhile is undone; otherwise the run still holds
      // it (a refresh that failed leaves the live role alone) and its revocation ends it.
      if (error instanceof HttpError && runEndedReasons.has(error.reason)) {
        await Promise.all(minted.map((c) => this.#o.upstream.revoke(run, c))).catch(
          (undo: unknown) =>
            this.#o.logger.error(
              { err: undo },
              "could not revoke what was minted for a run that ended during issuance",
            ),
        );
      }
      throw error;
    }
  }

  /** The grants in force now: the policy is evaluated again, so a withdrawn grant stops issuance. */
  #grants(run: LangGraphRun): { claim: GrantClaim; connection: AnyConnection }[] {
    const namespace = run.metadata?.namespace ?? "";
    const requester = requesterOf(run);
    if (!requester) throw new HttpError(403, "AccessRevoked", "the run has no valid requester");
    const decision = evaluateAccess({
      namespace,
      requester,
      access: run.spec.access,
      maxDurationMs: parseDuration(run.spec.maxDuration),
      policies: this.#o.caches.policies.list(namespace),
      ...connectionsIn(this.#o.caches, namespace),
    });
    if (!decision.allowed) {
      throw new HttpError(
        403,
        "AccessRevoked",
        `the run's grant no longer holds: ${decision.message}`,
      );
    }
    return decision.grants.map(({ connection, actions, grant }) => {
      const claim: GrantClaim = {
        connection: connection.metadata?.name ?? "",
        type: connection.spec.postgres ? "postgres" : "http",
        actions,
      };
      if (grant.http) claim.http = grant.http;
      if (grant.masking) claim.masking = grant.masking;
      if (grant.approval) claim.approval = grant.approval;
      return { claim, connection };
    });
  }

  #recordIssued(
    run: LangGraphRun,
    identity: PodIdentity,
    issuedAtMs: number,
    expiresAtMs: number,
  ): Promise<void> {
    return this.#writeCredentialStatus(
      run,
      {
        type: "CredentialIssued",
        status: "True",
        reason: "Issued",
        message: issuedMessage(identity),
      },
      { issuedAt: metaTime(issuedAtMs), expiresAt: metaTime(expiresAtMs) },
    );
  }

  /** Says on the run why its credential cannot be made until a person fixes the Connection. */
  async #recordMisconfigured(run: LangGraphRun, error: HttpError): Promise<void> {
    const current = findCondition(run.status?.conditions, "CredentialIssued");
    if (current?.reason === error.reason && current.message === error.message) return;
    await this.#writeCredentialStatus(run, {
      type: "CredentialIssued",
      status: "False",
      reason: error.reason,
      message: error.message,
    }).catch((failure: unknown) =>
      this.#o.logger.warn({ err: failure }, "could not record the credential failure on the run"),
    );
  }

  /**
   * Writes the CredentialIssued condition (and the credential's times), guarded by the run's
   * resourceVersion; on a conflict it re-reads the run, which must still hold a credential.
   */
  async #writeCredentialStatus(
    cached: LangGraphRun,
    condition: ConditionUpdate,
    credential?: { issuedAt: string; expiresAt: string },
  ): Promise<void> {
    const namespace = cached.metadata?.namespace ?? "";
    const name = cached.metadata?.name ?? "";
    let run = cached;
    for (let attempt = 1; ; attempt++) {
      const refusal = credentialRefusal(run, this.#now(), this.#o.seal);
      if (refusal) throw refusal;
      const status = {
        ...run.status,
        ...(credential ? { credential: { ...run.status?.credential, ...credential } } : {}),
        conditions: setCondition(
          run.status?.conditions ?? [],
          condition,
          run.metadata?.generation,
          metaTime(this.#now()),
        ),
      };
      try {
        await this.#o.status.write(run, status);
        return;
      } catch (error) {
        // Gone: a run's end, so what was minted for it is undone like any other.
        if (isNotFound(error)) {
          throw new HttpError(403, "RunNotFound", `LangGraphRun ${namespace}/${name} is gone`);
        }
        if (!isConflict(error) || attempt === statusAttempts) throw error;
      }
      const fresh = await this.#o.status.read(namespace, name);
      if (!fresh || fresh.metadata?.uid !== cached.metadata?.uid) {
        throw new HttpError(403, "RunNotFound", `LangGraphRun ${namespace}/${name} is gone`);
      }
      run = fresh;
    }
  }

  #refused(identity: PodIdentity, run: LangGraphRun | undefined, error: HttpError): void {
    const pod = `${identity.namespace}/${identity.podName}`;
    this.#o.logger.info({ pod, reason: error.reason }, `credential refused: ${error.message}`);
    // A sidecar retries a refusal; one Event per pod and reason a minute is enough.
    const key = `${identity.podUid}/${error.reason}`;
    if (this.#refusalEvents.has(key)) return;
    this.#refusalEvents.set(key, true);
    const regarding = run
      ? typedRun(run)
      : {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { namespace: identity.namespace, name: identity.podName, uid: identity.podUid },
        };
    void this.#o.events.record(
      regarding,
      "Warning",
      "CredentialRefused",
      "Issue",
      `refused pod ${identity.podName}: ${error.message}`,
    );
  }
}

/** Whether status.credential no longer describes this credential closely enough. */
function statusIsStale(run: LangGraphRun, identity: PodIdentity, expiresAtMs: number): boolean {
  const condition = findCondition(run.status?.conditions, "CredentialIssued");
  const recorded = Date.parse(run.status?.credential?.expiresAt ?? "");
  return (
    condition?.status !== "True" ||
    condition.message !== issuedMessage(identity) ||
    !(Math.abs(expiresAtMs - recorded) < statusSlackMs)
  );
}

function issuedMessage(identity: PodIdentity): string {
  return `issued to pod ${identity.podName}`;
}
