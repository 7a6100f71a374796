// Benchmark: the sidecar's HTTP data path against the same upstream reached directly and through
// nginx (Debian's) as a reverse proxy, in one run on one machine with one load generator: the
// saturation throughput, the latency each proxy adds at a fixed 1,000 req/s (1 KB bodies), the
// sidecar's CPU per 1,000 req/s and its RSS. Every request through the sidecar is checked against
// the grant, gets the connection's credential and is recorded as a session event on disk, which
// it ships to the credential API (a process of its own, like the upstream and nginx).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "undici";
import {
  generateCertificateAuthority,
  issueServingCertificate,
} from "../operator/src/admission/webhook-certs.ts";
import { testIdentity } from "../sidecar/src/testing/credential-api-server.ts";
import { freePort, waitFor } from "../sidecar/src/testing/test-helpers.ts";
import { closedLoop, ms, openLoop, percentile } from "./lib/stats.ts";

const rate = Number(process.env.BENCH_HTTP_RATE ?? 1000);
const seconds = Number(process.env.BENCH_HTTP_SECONDS ?? 10);
const workers = Number(process.env.BENCH_HTTP_WORKERS ?? 64);
const repo = join(import.meta.dirname, "..");
const work = mkdtempSync(join(tmpdir(), "lgjit-bench-http-"));
const children: ChildProcess[] = [];
// SIGTERM: nginx's master then stops its workers too (SIGKILL would orphan them).
process.on("exit", () => {
  for (const child of children) child.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
});

function start(command: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  children.push(child);
  return child;
}

/** The first line a child prints. */
async function firstLine(child: ChildProcess): Promise<string> {
  const [chunk] = (await once(child.stdout as NodeJS.ReadableStream, "data")) as [Buffer];
  return chunk.toString().trim();
}

// The upstream, with a CA of its own.
const authority = await generateCertificateAuthority({
  commonName: "bench-upstream-ca",
  validityDays: 1,
});
const serving = await issueServingCertificate(authority, {
  dnsNames: [],
  ipAddresses: ["127.0.0.1"],
  validityDays: 1,
});
writeFileSync(join(work, "ca.crt"), authority.certPem);
const upstreamProcess = start(process.execPath, [join(repo, "bench/lib/https-upstream.ts")], {
  UPSTREAM_CERT: serving.certPem,
  UPSTREAM_KEY: serving.keyPem,
});
const upstreamPort = Number(await firstLine(upstreamProcess));

// nginx as a reverse proxy: one worker (the sidecar has one thread), upstream keep-alive, TLS
// verified against the same CA.
const nginxPort = await freePort();
writeFileSync(
  join(work, "nginx.conf"),
  `daemon off;
worker_processes 1;
pid ${work}/nginx.pid;
error_log ${work}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${work}; proxy_temp_path ${work}; fastcgi_temp_path ${work};
  uwsgi_temp_path ${work}; scgi_temp_path ${work};
  upstream api { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${nginxPort};
    location / {
      proxy_pass https://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${work}/ca.crt;
      proxy_ssl_name 127.0.0.1;
      proxy_ssl_session_reuse on;
    }
  }
}
`,
);
execFileSync("nginx", ["-t", "-q", "-p", work, "-c", join(work, "nginx.conf")]);
start("nginx", ["-p", work, "-c", join(work, "nginx.conf")]);

// The real sidecar, its credential from the credential API's test server: kb-api at the upstream.
const operatorProcess = start(process.execPath, [join(repo, "bench/lib/credential-api.ts")], {
  UPSTREAM_URL: `https://127.0.0.1:${upstreamPort}`,
  UPSTREAM_CA: authority.certPem,
});
const operator = JSON.parse(await firstLine(operatorProcess)) as { url: string; caPem: string };
writeFileSync(join(work, "token"), "pod-token\n");
const [listenerPort, adminPort] = [await freePort(), await freePort()];
const sidecar = start(join(repo, "sidecar/bin/sidecar"), [], {
  LGJIT_RUN: testIdentity.run,
  LGJIT_RUN_UID: testIdentity.runUid,
  LGJIT_NAMESPACE: testIdentity.namespace,
  LGJIT_POD_NAME: testIdentity.podName,
  LGJIT_POD_UID: testIdentity.podUid,
  LGJIT_OPERATOR_URL: operator.url,
  LGJIT_OPERATOR_CA: operator.caPem,
  LGJIT_TOKEN_FILE: join(work, "token"),
  LGJIT_STATE_DIR: work,
  LGJIT_LISTENERS: JSON.stringify({ "kb-api": listenerPort }),
  LGJIT_PROXY_PORT: String(await freePort()),
  LGJIT_ADMIN_PORT: String(adminPort),
  LGJIT_LOG_LEVEL: "warn",
});
await waitFor(
  "the sidecar to be ready",
  async () =>
    (await fetch(`http://127.0.0.1:${adminPort}/ready`).catch(() => undefined))?.status === 200,
  20_000,
);

const targets = {
  direct: new Pool(`https://127.0.0.1:${upstreamPort}`, {
    connections: workers,
    connect: { ca: authority.certPem },
  }),
  nginx: new Pool(`http://127.0.0.1:${nginxPort}`, { connections: workers }),
  sidecar: new Pool(`http://127.0.0.1:${listenerPort}`, { connections: workers }),
};
type Target = keyof typeof targets;
async function get(target: Target): Promise<void> {
  const { statusCode, body } = await targets[target].request({ method: "GET", path: "/v1/docs/1" });
  await body.dump();
  if (statusCode !== 200) throw new Error(`${target} answered ${statusCode}`);
}

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
function rssMb(pid: number, field: "VmRSS" | "VmHWM"): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`${field}:\\s+(\\d+)`));
  return Number(line?.[1] ?? 0) / 1024;
}

/** How many session events the operator side has stored. */
async function storedEvents(): Promise<number> {
  operatorProcess.send("events");
  const [stored] = (await once(operatorProcess, "message")) as [number];
  return stored;
}

const order: Target[] = ["direct", "nginx", "sidecar"];
let sidecarRequests = 0;
for (const target of order) {
  // Warm pools and JIT.
  const { latencies } = await closedLoop(8, 1_000, () => get(target));
  if (target === "sidecar") sidecarRequests += latencies.length;
}

const saturation: Record<string, number> = {};
for (const target of order) {
  const { latencies, elapsedMs } = await closedLoop(workers, seconds * 1000, () => get(target));
  saturation[target] = latencies.length / (elapsedMs / 1000);
  if (target === "sidecar") sidecarRequests += latencies.length;
}
const fixed: Record<string, { p50: number; p99: number }> = {};
let sidecarCpu = 0;
for (const target of order) {
  // The fixed rate measures the steady state: the backlog of events from saturation is shipped.
  if (target === "sidecar") {
    await waitFor(
      "the sidecar to ship the events of the saturation phase",
      async () => (await storedEvents()) >= sidecarRequests,
      120_000,
    );
  }
  const cpuBefore = target === "sidecar" ? cpuSeconds(sidecar.pid ?? 0) : 0;
  const latencies = await openLoop(rate, seconds * 1000, () => get(target));
  if (target === "sidecar") sidecarCpu = (cpuSeconds(sidecar.pid ?? 0) - cpuBefore) / seconds;
  fixed[target] = { p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}
const added = (target: Target, p: "p50" | "p99") =>
  (fixed[target]?.[p] ?? 0) - (fixed.direct?.[p] ?? 0);
const pid = sidecar.pid ?? 0;
const stored = await storedEvents();

console.log(
  `\nHTTP data path: GET with a 1 KB JSON body, ${workers} workers at saturation, ${rate} req/s fixed, ${seconds} s each`,
);
console.log(
  "| path | saturation req/s | p50 at fixed rate | p99 at fixed rate | added p50 | added p99 |",
);
console.log("|---|---|---|---|---|---|");
for (const target of order) {
  const row = fixed[target] ?? { p50: 0, p99: 0 };
  const extra =
    target === "direct" ? ["—", "—"] : [ms(added(target, "p50")), ms(added(target, "p99"))];
  console.log(
    `| ${target} | ${Math.round(saturation[target] ?? 0)} | ${ms(row.p50)} | ${ms(row.p99)} | ${extra.join(" | ")} |`,
  );
}
console.log(
  `sidecar saturation / nginx saturation: ${((saturation.sidecar ?? 0) / (saturation.nginx ?? 1)).toFixed(2)} (target >= 0.5)`,
);
console.log(
  `sidecar added p99 / nginx added p99: ${(added("sidecar", "p99") / Math.max(added("nginx", "p99"), 0.001)).toFixed(2)}; sidecar added p99 ${ms(added("sidecar", "p99"))} (target <= 1 ms)`,
);
console.log(
  `sidecar CPU per 1,000 req/s: ${((sidecarCpu * 1000) / rate).toFixed(3)} vCPU (target <= 0.15)`,
);
console.log(
  `sidecar RSS: ${rssMb(pid, "VmRSS").toFixed(0)} MB now, ${rssMb(pid, "VmHWM").toFixed(0)} MB peak (target <= 80 MB)`,
);
console.log(`session events the sidecar shipped to the operator: ${stored}`);

await Promise.all(Object.values(targets).map((pool) => pool.close()));
const stopped = once(sidecar, "exit");
sidecar.kill("SIGTERM");
await stopped;
process.exit(0);
