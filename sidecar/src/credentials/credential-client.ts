// Holds the run's credential: fetches the bundle with the pod's projected token, verifies it,
// refreshes it before it expires, and drops it the moment it expires or the operator revokes
// it. Fail closed: until a verified, unexpired bundle is held there is nothing to use.
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { type Backoff, backoffDelay } from "../../../api/backoff.ts";
import { maxStatusWaitSeconds } from "../../../api/credentials.ts";
import { errorMessage } from "../../../api/errors.ts";
import { timerDelay } from "../../../api/timers.ts";
import { OperatorClient, OperatorRequestError } from "./operator-client.ts";
import {
  BundleRejectedError,
  RunTokenVerifier,
  type SidecarIdentity,
  type VerifiedCredential,
} from "./run-token-verifier.ts";

/** pending: nothing usable held (yet, or any more); active: a verified bundle is held;
 * revoked: the operator ended the run's credential, and it is never fetched again. */
export const credentialStates = ["pending", "active", "revoked"] as const;
export type CredentialState = (typeof credentialStates)[number];

export type Readiness = { ready: true; expiresAt: Date } | { ready: false; reason: string };

export interface CredentialChange {
  state: CredentialState;
  /** The credential now held; undefined unless state is active. */
  credential: VerifiedCredential | undefined;
}

/** What the credential client counts (the process's SidecarMetrics provides it). */
export interface CredentialMetrics {
  fetchAttempts: { inc(): void };
  fetchFailures: { inc(labels: { reason: string }): void };
  statusFailures: { inc(labels: { reason: string }): void };
  setCredential(state: CredentialState, expiresAt: Date | undefined): void;
}

export interface CredentialTiming {
  /** While the operator is unreachable or answers 5xx. */
  retry: Backoff;
  /** After a refusal (401/403: the run may not be Running yet) or a bundle that failed checks. */
  slowRetry: Backoff;
  /** After the operator says a person must fix a Connection first (424 CredentialMisconfigured). */
  rareRetry: Backoff;
  /** How long the operator may hold a revocation long-poll. */
  statusWaitSeconds: number;
  /**
   * How long the credential is used without word from the operator (a status answer or a
   * bundle): past it nothing is forwarded until the operator answers again, so a revocation
   * it could not deliver takes effect within this bound. Longer than statusWaitSeconds.
   */
  silenceMs: number;
  /** A long-poll answered sooner waits out the rest, so a server that never holds is polled at
   * this rate rather than in a busy loop. */
  minStatusIntervalMs: number;
  jwksMaxAgeMs: number;
  jwksRefetchCooldownMs: number;
}

export const defaultTiming: CredentialTiming = {
  retry: { initialMs: 200, maxMs: 5_000 },
  slowRetry: { initialMs: 1_000, maxMs: 15_000 },
  rareRetry: { initialMs: 10_000, maxMs: 120_000 },
  statusWaitSeconds: 20,
  silenceMs: 30_000,
  minStatusIntervalMs: 1_000,
  jwksMaxAgeMs: 30_000,
  jwksRefetchCooldownMs: 10_000,
};

export interface CredentialClientOptions {
  /** The operator's https base URL; also the run JWT's expected issuer. */
  operatorUrl: string;
  operatorCa: string;
  tokenFile: string;
  identity: SidecarIdentity;
  logger: Logger;
  metrics: CredentialMetrics;
  timing?: Partial<CredentialTiming>;
}

/** The token file is missing, unreadable or empty. */
export class TokenFileError extends Error {
  override name = "TokenFileError";
}

const tlsVerificationCodes = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

interface Failure {
  /** A bounded, CamelCase metric label. */
  reason: string;
  /** fast: retry soon; slow, rare: with a slower backoff; never: the credential is revoked. */
  pace: "fast" | "slow" | "rare" | "never";
  message: string;
}

export class CredentialClient {
  readonly #options: CredentialClientOptions;
  readonly #timing: CredentialTiming;
  readonly #logger: Logger;
  readonly #operator: OperatorClient;
  readonly #verifier: RunTokenVerifier;
  // Aborted on stop and on revocation: every request and wait in flight ends with it.
  readonly #lifetime = new AbortController();
  readonly #listeners = new Set<(change: CredentialChange) => void>();
  readonly #tasks = new Set<Promise<void>>();
  #state: CredentialState = "pending";
  #credential: VerifiedCredential | undefined;
  #notReadyReason = "no credential fetched yet";
  #started = false;
  #stopped = false;
  #acquiring = false;
  #watching = false;
  #refreshTimer: NodeJS.Timeout | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #silenceTimer: NodeJS.Timeout | undefined;
  /** When the operator last answered: a bundle or a status. */
  #heardAt = 0;

  constructor(options: CredentialClientOptions) {
    this.#options = options;
    this.#timing = { ...defaultTiming, ...options.timing };
    this.#logger = options.logger;
    this.#operator = new OperatorClient({ baseUrl: options.operatorUrl, ca: options.operatorCa });
    this.#verifier = new RunTokenVerifier({
      operator: this.#operator,
      issuer: options.operatorUrl,
      identity: options.identity,
      jwksMaxAgeMs: this.#timing.jwksMaxAgeMs,
      jwksRefetchCooldownMs: this.#timing.jwksRefetchCooldownMs,
    });
  }

  get state(): CredentialState {
    return this.#state;
  }

  /** The verified, unexpired credential, while the operator has been heard from lately. */
  current(): VerifiedCredential | undefined {
    const credential = this.#credential;
    const now = Date.now();
    if (!credential || credential.expiresAt.getTime() <= now) return undefined;
    return this.#silent(now) ? undefined : credential;
  }

  readiness(): Readiness {
    if (this.#stopped) return { ready: false, reason: "the sidecar is stopping" };
    const credential = this.current();
    if (this.#state === "active" && credential) {
      return { ready: true, expiresAt: credential.expiresAt };
    }
    if (this.#state === "active" && this.#credential) {
      if (this.#credential.expiresAt.getTime() <= Date.now()) {
        return {
          ready: false,
          reason: `the credential expired at ${this.#credential.expiresAt.toISOString()}`,
        };
      }
      return { ready: false, reason: this.#silenceReason() };
    }
    return { ready: false, reason: this.#notReadyReason };
  }

  #silent(now: number): boolean {
    return now - this.#heardAt > this.#timing.silenceMs;
  }

  #silenceReason(): string {
    const seconds = Math.round((Date.now() - this.#heardAt) / 1000);
    return `the operator has not answered for ${seconds} s: nothing is forwarded until it does, since a revocation could not reach the sidecar`;
  }

  /** The operator answered: the credential may be used for silenceMs more. */
  #heard(): void {
    const wasSilent = this.#heardAt > 0 && this.#silent(Date.now());
    this.#heardAt = Date.now();
    if (wasSilent) this.#logger.info("the operator answers again: forwarding resumes");
    clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(() => {
      if (this.#state === "active") this.#logger.warn(this.#silenceReason());
    }, this.#timing.silenceMs + 1);
    this.#silenceTimer.unref?.();
  }

  /** Calls listener on every change of state or held credential; returns the unsubscribe. */
  subscribe(listener: (change: CredentialChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#track(this.#acquire());
  }

  /** Stops fetching and polling, ends requests in flight and closes the operator connections. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#clearTimers();
    clearTimeout(this.#silenceTimer);
    this.#lifetime.abort(new Error("the sidecar is stopping"));
    await Promise.allSettled([...this.#tasks]);
    await this.#operator.close().catch(() => {});
  }

  #live(): boolean {
    return !this.#stopped && this.#state !== "revoked";
  }

  #track(task: Promise<void>): void {
    const tracked = task
      .catch((error: unknown) => this.#logger.error({ err: error }, "credential task failed"))
      .finally(() => this.#tasks.delete(tracked));
    this.#tasks.add(tracked);
  }

  /** Fetches until a verified bundle is held; the one held meanwhile stays until it expires. */
  async #acquire(): Promise<void> {
    if (this.#acquiring || !this.#live()) return;
    this.#acquiring = true;
    try {
      for (let attempt = 0; this.#live(); attempt++) {
        let failure: Failure;
        try {
          const credential = await this.#fetchOnce();
          // Revoked or stopped while the answer was on its way: it is never used.
          if (!this.#live()) return;
          this.#hold(credential);
          return;
        } catch (error) {
          if (!this.#live()) return;
          failure = classifyFetchFailure(error);
        }
        this.#options.metrics.fetchFailures.inc({ reason: failure.reason });
        if (failure.pace === "never") {
          this.#revoke(failure.message);
          return;
        }
        const delay = backoffDelay(attempt, this.#backoffFor(failure.pace));
        this.#logger.warn(
          { reason: failure.reason, attempt, retryInMs: Math.round(delay) },
          `no usable credential bundle: ${failure.message}`,
        );
        if (!this.#credential) this.#notReadyReason = `no credential: ${failure.message}`;
        if (!(await this.#sleep(delay))) return;
      }
    } finally {
      this.#acquiring = false;
    }
  }

  #backoffFor(pace: Failure["pace"]): Backoff {
    if (pace === "rare") return this.#timing.rareRetry;
    return pace === "slow" ? this.#timing.slowRetry : this.#timing.retry;
  }

  async #fetchOnce(): Promise<VerifiedCredential> {
    this.#options.metrics.fetchAttempts.inc();
    // Read on every fetch: the kubelet rotates the projected token.
    const podToken = await readPodToken(this.#options.tokenFile);
    const { signal } = this.#lifetime;
    const answer = await this.#operator.issue(podToken, signal);
    return this.#verifier.verify(answer, signal);
  }

  #hold(credential: VerifiedCredential): void {
    this.#clearTimers();
    this.#heard();
    this.#credential = credential;
    const remaining = credential.expiresAt.getTime() - Date.now();
    // At 80% of the remaining lifetime, and at least a second before it ends.
    const refreshIn = Math.max(0, Math.min(remaining * 0.8, remaining - 1_000));
    this.#refreshTimer = setTimeout(() => this.#track(this.#acquire()), timerDelay(refreshIn));
    this.#armExpiry(credential);
    this.#setState("active");
    this.#logger.info(
      {
        jti: credential.claims.jti,
        kid: credential.kid,
        expiresAt: credential.expiresAt.toISOString(),
        connections: Object.keys(credential.credentials),
        refreshInMs: Math.round(refreshIn),
      },
      "credential held",
    );
    this.#track(this.#watchStatus());
  }

  #armExpiry(credential: VerifiedCredential): void {
    const remaining = credential.expiresAt.getTime() - Date.now();
    this.#expiryTimer = setTimeout(() => {
      if (credential !== this.#credential) return;
      if (credential.expiresAt.getTime() > Date.now()) return this.#armExpiry(credential);
      this.#drop(`the credential expired at ${credential.expiresAt.toISOString()}`);
    }, timerDelay(remaining));
  }

  /** Learns of revocation by long-polling the status endpoint with the held run JWT. */
  async #watchStatus(): Promise<void> {
    if (this.#watching) return;
    this.#watching = true;
    try {
      for (let attempt = 0; this.#live(); ) {
        const held = this.#credential;
        if (!held) return;
        const startedAt = Date.now();
        try {
          const answer = await this.#operator.status(
            held.token,
            Math.min(this.#timing.statusWaitSeconds, maxStatusWaitSeconds),
            this.#lifetime.signal,
          );
          if ((answer as { state?: unknown }).state !== "active") {
            throw new OperatorRequestError(
              "malformed",
              "the status answer is not a RunTokenStatus",
            );
          }
          attempt = 0;
          this.#heard();
          const rest = this.#timing.minStatusIntervalMs - (Date.now() - startedAt);
          if (rest > 0 && !(await this.#sleep(rest))) return;
        } catch (error) {
          if (!this.#live()) return;
          const refusal = error instanceof OperatorRequestError && error.kind === "refused";
          if (refusal && error.reason === "Revoked") {
            this.#revoke(`the operator revoked the run's credential (${error.message})`);
            return;
          }
          const failure = classifyFetchFailure(error);
          this.#options.metrics.statusFailures.inc({ reason: failure.reason });
          if (refusal && (error.status === 401 || error.status === 403)) {
            // A refusal of a JWT already replaced says nothing about the one held now.
            if (held !== this.#credential) continue;
            this.#drop(`the operator no longer accepts the run JWT: ${failure.message}`);
            return;
          }
          // The credential's own expiry still bounds how long an unanswered poll can last.
          const backoff = failure.pace === "fast" ? this.#timing.retry : this.#timing.slowRetry;
          const delay = backoffDelay(attempt++, backoff);
          this.#logger.warn(
            { reason: failure.reason, retryInMs: Math.round(delay) },
            `revocation long-poll failed: ${failure.message}`,
          );
          if (!(await this.#sleep(delay))) return;
        }
      }
    } finally {
      this.#watching = false;
    }
  }

  /** Stops using the held credential and fetches a new one. */
  #drop(reason: string): void {
    this.#clearTimers();
    this.#credential = undefined;
    this.#notReadyReason = reason;
    this.#setState("pending");
    this.#logger.warn({ reason }, "credential dropped");
    this.#track(this.#acquire());
  }

  /** Final: drops the credential, ends every request in flight and never fetches again. */
  #revoke(reason: string): void {
    this.#clearTimers();
    this.#credential = undefined;
    this.#notReadyReason = reason;
    this.#setState("revoked");
    this.#lifetime.abort(new Error("the run's credential is revoked"));
    this.#logger.warn({ reason }, "credential revoked");
  }

  #setState(state: CredentialState): void {
    this.#state = state;
    const credential = state === "active" ? this.#credential : undefined;
    this.#options.metrics.setCredential(state, credential?.expiresAt);
    for (const listener of this.#listeners) {
      try {
        listener({ state, credential });
      } catch (error) {
        this.#logger.error({ err: error }, "credential listener failed");
      }
    }
  }

  #clearTimers(): void {
    clearTimeout(this.#refreshTimer);
    clearTimeout(this.#expiryTimer);
    this.#refreshTimer = undefined;
    this.#expiryTimer = undefined;
  }

  /** Waits ms; false when the client stopped or was revoked meanwhile. */
  async #sleep(ms: number): Promise<boolean> {
    try {
      await sleep(ms, undefined, { signal: this.#lifetime.signal });
      return true;
    } catch {
      return false;
    }
  }
}

async function readPodToken(path: string): Promise<string> {
  let token: string;
  try {
    token = (await readFile(path, "utf8")).trim();
  } catch (error) {
    throw new TokenFileError(
      `the pod token file ${path} cannot be read: ${error instanceof Error ? error.message : error}`,
    );
  }
  if (token === "") throw new TokenFileError(`the pod token file ${path} is empty`);
  return token;
}

function classifyFetchFailure(error: unknown): Failure {
  const message = errorMessage(error);
  if (error instanceof TokenFileError)
    return { reason: "TokenFileUnreadable", pace: "fast", message };
  if (error instanceof BundleRejectedError)
    return { reason: "BundleRejected", pace: "slow", message };
  if (!(error instanceof OperatorRequestError))
    return { reason: "Internal", pace: "slow", message };
  switch (error.kind) {
    case "unreachable":
      return {
        reason: tlsVerificationCodes.has(error.code ?? "") ? "TlsUntrusted" : "Unreachable",
        pace: "fast",
        message,
      };
    case "server":
      return { reason: "ServerError", pace: "fast", message };
    case "malformed":
      return { reason: "MalformedAnswer", pace: "slow", message };
    case "refused":
      return {
        reason: /^[A-Z][A-Za-z]{0,39}$/.test(error.reason ?? "")
          ? (error.reason as string)
          : "Refused",
        pace:
          error.reason === "Revoked"
            ? "never"
            : error.reason === "CredentialMisconfigured"
              ? "rare"
              : "slow",
        message,
      };
  }
}
