// The sidecar-facing credential routes: issue a bundle, report (and long-poll) whether a run
// token still holds, and publish the JWKS. Every replica serves them from its own caches.
import type { JSONWebKeySet } from "jose";
import type { Logger } from "pino";
import {
  credentialApi,
  maxStatusWaitSeconds,
  type RunTokenStatus,
} from "../../../api/credentials.ts";
import { timerDelay } from "../../../api/timers.ts";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import type { Cache } from "../kube/cache.ts";
import type { StatusSeal } from "../runs/status-seal.ts";
import { HttpError, type Route } from "../server/https-server.ts";
import { countedRequest, type OperatorMetrics } from "../server/metrics.ts";
import type { CredentialIssuer } from "./credential-issuer.ts";
import { credentialRefusal } from "./run-of-pod.ts";
import { bearerToken, type RunTokenVerify, type VerifiedRunToken } from "./run-token.ts";

const maxWaitersPerRun = 8;

export interface CredentialRoutesOptions {
  issuer: CredentialIssuer;
  jwks(): JSONWebKeySet;
  verify: RunTokenVerify;
  runs: Cache<LangGraphRun> & { onChange(handler: (run: LangGraphRun) => void): void };
  seal: StatusSeal;
  logger: Logger;
  metrics: OperatorMetrics;
}

export function credentialRoutes(options: CredentialRoutesOptions): Record<string, Route> {
  const { metrics, runs, verify } = options;
  const waiters = new Map<string, Set<() => void>>();
  runs.onChange((run) => {
    for (const wake of waiters.get(run.metadata?.uid ?? "") ?? []) wake();
  });

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
        throw new HttpError(429, "TooManyRequests", `too many status long-polls for run ${uid}`);
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

  const counted = <T>(operation: string, work: () => Promise<T>) =>
    countedRequest(metrics, operation, work);

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
    [credentialApi.jwks]: {
      method: "GET",
      async handle() {
        return { status: 200, body: options.jwks() };
      },
    },
  };
}
