// One prom-client Registry per sidecar process; every metric name starts with lgjit_sidecar_.
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { type CredentialState, credentialStates } from "./credentials/credential-client.ts";

export type SidecarMetrics = ReturnType<typeof createSidecarMetrics>;

export function createSidecarMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "lgjit_sidecar_" });
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
