// One prom-client Registry per sidecar process; every metric name starts with lgjit_sidecar_.
import { createRequire } from "node:module";
import type * as PromClient from "prom-client";

// prom-client's index also loads the push gateway, cluster aggregation and every default
// metric (event-loop and GC monitors): about 15 MB of resident memory an idle sidecar does not
// need. The metric classes and the process metrics below are loaded on their own.
const require = createRequire(import.meta.url);
const { Counter, Gauge, Registry } = {
  Counter: require("prom-client/lib/counter") as typeof PromClient.Counter,
  Gauge: require("prom-client/lib/gauge") as typeof PromClient.Gauge,
  Registry: require("prom-client/lib/registry") as typeof PromClient.Registry,
};
type ProcessMetric = (registry: PromClient.Registry, config: { prefix: string }) => void;
const processMetrics = [
  "processCpuTotal",
  "processStartTime",
  "processOpenFileDescriptors",
  "osMemoryHeap",
  "heapSizeAndUsed",
].map((name) => require(`prom-client/lib/metrics/${name}`) as ProcessMetric);

import { type CredentialState, credentialStates } from "./credentials/credential-client.ts";

export type SidecarMetrics = ReturnType<typeof createSidecarMetrics>;

export function createSidecarMetrics() {
  const registry = new Registry();
  for (const register of processMetrics) register(registry, { prefix: "lgjit_sidecar_" });
  let expiresAtMs: number | undefined;
  const credentialState = new Gauge({
    name: "lgjit_sidecar_credential_state",
    help: "1 for the credential's current state (pending, active, revoked), 0 for the others",
    labelNames: ["state"] as const,
    registers: [registry],
  });
  const metrics = {
    registry,
    credentialState,
    fetchAttempts: new Counter({
      name: "lgjit_sidecar_credential_fetch_attempts_total",
      help: "Credential bundle fetches started (first issuance, refreshes and retries)",
      registers: [registry],
    }),
    fetchFailures: new Counter({
      name: "lgjit_sidecar_credential_fetch_failures_total",
      help: "Credential bundle fetches that gave no usable bundle, by reason",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    statusFailures: new Counter({
      name: "lgjit_sidecar_credential_status_failures_total",
      help: "Revocation long-polls that gave no answer, by reason",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: "lgjit_sidecar_http_requests_total",
      help: "Requests the graph made through a connection's HTTP proxy, by connection, kind (request, denied, error) and status",
      labelNames: ["connection", "kind", "status"] as const,
      registers: [registry],
    }),
    sqlStatements: new Counter({
      name: "lgjit_sidecar_sql_statements_total",
      help: "SQL statements the graph sent through a Postgres connection, by connection, kind (statement, masked, denied) and action",
      labelNames: ["connection", "kind", "action"] as const,
      registers: [registry],
    }),
    expirySeconds: new Gauge({
      name: "lgjit_sidecar_credential_expiry_seconds",
      help: "Seconds until the held credential expires; 0 while none is held",
      registers: [registry],
      collect() {
        this.set(expiresAtMs === undefined ? 0 : Math.max(0, (expiresAtMs - Date.now()) / 1000));
      },
    }),
    /** Records the current state and the held credential's expiry (undefined: none held). */
    setCredential(state: CredentialState, expiresAt: Date | undefined): void {
      for (const candidate of credentialStates) {
        credentialState.set({ state: candidate }, candidate === state ? 1 : 0);
      }
      expiresAtMs = expiresAt?.getTime();
    },
  };
  metrics.setCredential("pending", undefined);
  return metrics;
}
