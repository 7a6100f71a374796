// One prom-client Registry per sidecar process; every metric name starts with lgjit_sidecar_.
import { readdirSync, readFileSync } from "node:fs";
import { Counter, Gauge, Registry } from "prom-client";
import { type CredentialState, credentialStates } from "./credentials/credential-client.ts";

export type SidecarMetrics = ReturnType<typeof createSidecarMetrics>;

export function createSidecarMetrics() {
  const registry = new Registry();
  registerProcessMetrics(registry);
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

// prom-client's process metrics, by the same names, help and values: its collectDefaultMetrics()
// would also start an event-loop delay monitor and a GC observer, and add 20 more metrics.
// A scrape answers even when /proc cannot be read (no descriptor left): those values stay.
function registerProcessMetrics(registry: Registry): void {
  const registers = [registry];
  // CPU counted from here on, as prom-client does.
  let cpuBefore = process.cpuUsage();
  new Counter({
    name: "lgjit_sidecar_process_cpu_user_seconds_total",
    help: "Total user CPU time spent in seconds.",
    registers,
    collect() {
      const cpu = process.cpuUsage();
      const user = (cpu.user - cpuBefore.user) / 1e6;
      const system = (cpu.system - cpuBefore.system) / 1e6;
      cpuBefore = cpu;
      this.inc(user);
      cpuSystem.inc(system);
      cpuTotal.inc(user + system);
    },
  });
  const cpuSystem = new Counter({
    name: "lgjit_sidecar_process_cpu_system_seconds_total",
    help: "Total system CPU time spent in seconds.",
    registers,
  });
  const cpuTotal = new Counter({
    name: "lgjit_sidecar_process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    registers,
  });
  const startSeconds = Math.round(Date.now() / 1000 - process.uptime());
  new Gauge({
    name: "lgjit_sidecar_process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds.",
    registers,
    collect() {
      this.set(startSeconds);
    },
  });
  new Gauge({
    name: "lgjit_sidecar_process_open_fds",
    help: "Number of open file descriptors.",
    registers,
    collect() {
      try {
        // Minus the descriptor readdirSync itself held.
        this.set(readdirSync("/proc/self/fd").length - 1);
      } catch {}
    },
  });
  new Gauge({
    name: "lgjit_sidecar_process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers,
    collect() {
      let status: string;
      try {
        status = readFileSync("/proc/self/status", "utf8");
      } catch {
        return;
      }
      this.set(statusBytes(status, "VmRSS"));
      virtualMemory.set(statusBytes(status, "VmSize"));
      heapMemory.set(statusBytes(status, "VmData"));
    },
  });
  const virtualMemory = new Gauge({
    name: "lgjit_sidecar_process_virtual_memory_bytes",
    help: "Virtual memory size in bytes.",
    registers,
  });
  const heapMemory = new Gauge({
    name: "lgjit_sidecar_process_heap_bytes",
    help: "Process heap size in bytes.",
    registers,
  });
  new Gauge({
    name: "lgjit_sidecar_nodejs_heap_size_total_bytes",
    help: "Process heap size from Node.js in bytes.",
    registers,
    collect() {
      let memory: NodeJS.MemoryUsage;
      try {
        // It reads /proc too, for the RSS.
        memory = process.memoryUsage();
      } catch {
        return;
      }
      this.set(memory.heapTotal);
      heapUsed.set(memory.heapUsed);
      externalMemory.set(memory.external);
    },
  });
  const heapUsed = new Gauge({
    name: "lgjit_sidecar_nodejs_heap_size_used_bytes",
    help: "Process heap size used from Node.js in bytes.",
    registers,
  });
  const externalMemory = new Gauge({
    name: "lgjit_sidecar_nodejs_external_memory_bytes",
    help: "Node.js external memory size in bytes.",
    registers,
  });
}

/** A field of /proc/self/status ("VmRSS:    81234 kB"), in bytes. */
function statusBytes(status: string, field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]) * 1024;
}
