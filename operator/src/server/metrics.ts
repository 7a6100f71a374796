// One prom-client Registry per process; every metric name starts with lgjit_.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { HttpError } from "./https-server.ts";

export type OperatorMetrics = ReturnType<typeof createMetrics>;

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "lgjit_operator_" });
  return {
    registry,
    runsByPhase: new Gauge({
      name: "lgjit_runs",
      help: "LangGraphRuns by phase, as the operator's cache sees them",
      labelNames: ["phase"] as const,
      registers: [registry],
    }),
    reconcileDuration: new Histogram({
      name: "lgjit_reconcile_duration_seconds",
      help: "Time to reconcile one LangGraphRun",
      labelNames: ["result"] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: "lgjit_workqueue_depth",
      help: "Runs waiting to be reconciled",
      registers: [registry],
    }),
    webhookDecisions: new Counter({
      name: "lgjit_webhook_decisions_total",
      help: "Admission decisions by webhook and outcome",
      labelNames: ["webhook", "decision"] as const,
      registers: [registry],
    }),
    credentialRequests: new Counter({
      name: "lgjit_credential_requests_total",
      help: "Credential API answers by operation and outcome (issued, or the refusal reason)",
      labelNames: ["operation", "outcome"] as const,
      registers: [registry],
    }),
    issueDuration: new Histogram({
      name: "lgjit_credential_issue_duration_seconds",
      help: "Time to answer POST /v1/credentials",
      labelNames: ["outcome"] as const,
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    tokenReviewDuration: new Histogram({
      name: "lgjit_token_review_duration_seconds",
      help: "Time to authenticate a pod token, by whether the review came from the cache",
      labelNames: ["cached"] as const,
      buckets: [0.0001, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [registry],
    }),
    isLeader: new Gauge({
      name: "lgjit_leader",
      help: "1 while this replica holds the reconciler's Lease",
      registers: [registry],
    }),
  };
}

/** Counts a sidecar-facing request by its outcome: ok, or the refusal's reason. */
export async function countedRequest<T>(
  metrics: OperatorMetrics,
  operation: string,
  work: () => Promise<T>,
): Promise<T> {
  try {
    const result = await work();
    metrics.credentialRequests.inc({ operation, outcome: "ok" });
    return result;
  } catch (error) {
    const outcome = error instanceof HttpError ? error.reason : "Internal";
    metrics.credentialRequests.inc({ operation, outcome });
    throw error;
  }
}
