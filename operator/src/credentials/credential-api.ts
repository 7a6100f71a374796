// The sidecar-facing routes: issue a bundle, report (and long-poll) whether a run token still
// holds, and publish the JWKS. Every replica serves them from its own caches.
import { errors, type JSONWebKeySet } from "jose";
import type { Logger } from "pino";
import {
  credentialApi,
  maxStatusWaitSeconds,
  type RunTokenStatus,
} from "../../../api/credentials.ts";
import { maxBatchBytes, type SessionEventsAck } from "../../../api/session-events.ts";
import { timerDelay } from "../../../api/timers.ts";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { HttpError, type Route, readBody } from "../https-server.ts";
import type { OperatorMetrics } from "../metrics.ts";
import type { Cache } from "../runs/run-controller.ts";
import type { StatusSeal } from "../runs/status-seal.ts";
import { parseEventsBatch } from "../sessions/events-batch.ts";
import type { SessionStatus } from "../sessions/session-status.ts";
import type { SessionStore } from "../sessions/session-store.ts";
import type { CredentialIssuer } from "./credential-issuer.ts";
import { credentialRefusal } from "./run-of-pod.ts";
import { bearerToken, runTokenVerifier, type VerifiedRunToken } from "./run-token.ts";

const keyRefreshIntervalMs = 5_000;
// A sidecar's last events may arrive after its token expired (the operator was away): they
// are still its run's, as long as the signature holds.
const eventsGraceSeconds = 24 * 3600;
const maxWaitersPerRun = 8;

export interface CredentialRoutesOptions {
  issuer: CredentialIssuer;
  jwks(): JSONWebKeySet;
  /**
   * Re-reads the shared signing keys (rotating them if due, as the periodic refresh would): a
   * token may carry a key another replica just made.
   */
  refreshKeys(): Promise<void>;
  /** The run JWT's iss. */
  issuerUrl: string;
  runs: Cache<LangGraphRun> & { onChange(handler: (run: LangGraphRun) => void): void };
  seal: StatusSeal;
  sessions: { store: SessionStore; status: SessionStatus };
  logger: Logger;
  metrics: OperatorMetrics;
}

export function credentialRoutes(options: CredentialRoutesOptions): Record<string, Route> {
  const { metrics, runs } = options;
  const waiters = new Map<string, Set<() => void>>();
  runs.onChange((run) => {
    for (const wake of waiters.get(run.metadata?.uid ?? "") ?? []) wake();
  });

  let verifier: { kids: string; verify: ReturnType<typeof runTokenVerifier> };
  let refreshedAt = 0;
  const verifyOnce = (token: string, toleranceSeconds: number) => {
    const jwks = options.jwks();
    const kids = jwks.keys.map((k) => k.kid).join();
    if (verifier?.kids !== kids) {
      verifier = { kids, verify: runTokenVerifier(jwks, options.issuerUrl) };
    }
    return verifier.verify(token, toleranceSeconds);
  };
  const verify = async (token: string, toleranceSeconds = 0) => {
    try {
      return await verifyOnce(token, toleranceSeconds);
    } catch (error) {
      const unknownKey =
        (error as Error).cause instanceof errors.JWKSNoMatchingKey &&
        Date.now() - refreshedAt > keyRefreshIntervalMs;
      if (!unknownKey) throw error;
      refreshedAt = Date.now();
      await options.refreshKeys();
      return verifyOnce(token, toleranceSeconds);
    }
  };

  /** The run token's state now: a refusal (401 Revoked) once its run no longer holds it. */
  const revocation = (token: VerifiedRunToken): HttpError | undefined => {
    const run = runs.get(token.run.namespace, token.run.name);
    if (run?.metadata?.uid !== token.sub) {
      return new HttpError(
        401,
        "Revoked",
        `LangGraphRun ${token.run.namespace}/${token.run.name} is gone`,
      );
    }
    const refusal = credentialRefusal(run, Date.now(), options.seal);
    return refusal && new HttpError(401, "Revoked", refusal.message);
  };

  const waitForChange = (uid: string, ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      const set = waiters.get(uid) ?? new Set();
      // A run has one sidecar; many waiters on one run are a misbehaving client.
      if (set.size >= maxWaitersPerRun) {
        throw new HttpError(429, "BadRequest", `too many status long-polls for run ${uid}`);
      }
      waiters.set(uid, set);
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        set.delete(done);
        if (set.size === 0) waiters.delete(uid);
        resolve();
      };
      const timer = setTimeout(done, timerDelay(ms));
      signal.addEventListener("abort", done);
      set.add(done);
    });

  const counted = async <T>(operation: string, work: () => Promise<T>): Promise<T> => {
    try {
      const result = await work();
      metrics.credentialRequests.inc({ operation, outcome: "ok" });
      return result;
    } catch (error) {
      const outcome = error instanceof HttpError ? error.reason : "Internal";
      metrics.credentialRequests.inc({ operation, outcome });
      throw error;
    }
  };

  return {
    [credentialApi.issue]: {
      method: "POST",
      async handle(request) {
        const end = metrics.issueDuration.startTimer();
        try {
          const bundle = await counted("issue", () =>
            options.issuer.issue(bearerToken(request.headers.authorization)),
          );
          end({ outcome: "issued" });
          return { status: 200, body: bundle };
        } catch (error) {
          end({ outcome: error instanceof HttpError ? error.reason : "Internal" });
          throw error;
        }
      },
    },
    [credentialApi.status]: {
      method: "GET",
      async handle(request, url, signal) {
        return counted("status", async () => {
          const wait = url.searchParams.get("waitSeconds") ?? "0";
          const waitSeconds = Number(wait);
          if (!/^\d+$/.test(wait) || waitSeconds > maxStatusWaitSeconds) {
            throw new HttpError(
              400,
              "BadRequest",
              `waitSeconds must be an integer from 0 to ${maxStatusWaitSeconds}, got "${wait}"`,
            );
          }
          const token = await verify(bearerToken(request.headers.authorization));
          const deadline = Date.now() + waitSeconds * 1000;
          for (;;) {
            const refusal = revocation(token);
            if (refusal) throw refusal;
            const remaining = Math.min(deadline, (token.exp ?? 0) * 1000) - Date.now();
            if (remaining <= 0 || signal.aborted) break;
            await waitForChange(token.sub, remaining, signal);
          }
          if ((token.exp ?? 0) * 1000 <= Date.now()) {
            throw new HttpError(401, "TokenInvalid", "the run token has expired");
          }
          const body: RunTokenStatus = { state: "active", deadline: token.run.deadline };
          return { status: 200, body };
        });
      },
    },
    [credentialApi.events]: {
      method: "POST",
      async handle(request) {
        return counted("events", async () => {
          const token = await verify(
            bearerToken(request.headers.authorization),
            eventsGraceSeconds,
          );
          const run = { ...token.run };
          const events = parseEventsBatch(await readBody(request, maxBatchBytes + 64 * 1024), run);
          await options.sessions.store.ingest(events).catch((error: unknown) => {
            throw new HttpError(503, "Internal", "the session store is unavailable", {
              cause: error,
            });
          });
          options.sessions.status.ingested(run);
          const ack: SessionEventsAck = { ackedThrough: Math.max(...events.map((e) => e.seq)) };
          return { status: 200, body: ack };
        });
      },
    },
    [credentialApi.jwks]: {
      method: "GET",
      async handle() {
        return { status: 200, body: options.jwks() };
      },
    },
  };
}
