// Benchmark: the sidecar's Postgres data path against the same PostgreSQL 15 reached directly and
// through pgbouncer (Debian's, session mode, TLS to the server as the sidecar does), in one run:
// pgbench's select-only and TPC-B-like scripts with 8 clients in simple, extended and prepared
// modes, the latency each adds at a fixed rate, the sidecar's CPU per 1,000 statements/s and the
// parser's share of it, and the sidecar's RSS idle (with and without the parser), with 100 idle
// client connections, and while streaming a 1 GB result. Every statement through the sidecar is
// parsed, classified, recorded as a session event and shipped to the credential API.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import {
  chmodSync,
  chownSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { startPostgres } from "../e2e/lib/postgres.ts";
import {
  generateCertificateAuthority,
  issueServingCertificate,
} from "../operator/src/admission/webhook-certs.ts";
import { classifyQuery, loadParser } from "../sidecar/src/postgres/statement-classifier.ts";
import { testIdentity } from "../sidecar/src/testing/credential-api-server.ts";
import { freePort, waitFor } from "../sidecar/src/testing/test-helpers.ts";
import { median, ms, percentile } from "./lib/stats.ts";

const run = promisify(execFile);
const seconds = Number(process.env.BENCH_PG_SECONDS ?? 10);
const clients = Number(process.env.BENCH_PG_CLIENTS ?? 8);
const rate = Number(process.env.BENCH_PG_RATE ?? 500);
const streamMb = Number(process.env.BENCH_PG_STREAM_MB ?? 1024);
const repo = join(import.meta.dirname, "..");
const work = mkdtempSync(join(tmpdir(), "lgjit-bench-pg-"));
const children: ChildProcess[] = [];
process.on("exit", () => {
  for (const child of children) child.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
});

for (const tool of ["pgbench", "pgbouncer", "psql"]) {
  await run("sh", ["-c", `command -v ${tool}`]).catch(() => {
    console.error(`${tool} is missing: apt-get install postgresql pgbouncer`);
    process.exit(1);
  });
}

/** Progress on stderr: the results table comes at the end. */
function phase(text: string): void {
  process.stderr.write(`[bench postgres ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
}

function start(command: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  children.push(child);
  return child;
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/);
  return Number(line?.[1] ?? 0) / 1024;
}

// PostgreSQL with TLS, and pgbench's tables (scale 10) readable and writable by a run role.
const authority = await generateCertificateAuthority({
  commonName: "bench-pg-ca",
  validityDays: 1,
});
const serving = await issueServingCertificate(authority, {
  dnsNames: ["localhost"],
  ipAddresses: ["127.0.0.1"],
  validityDays: 1,
});
const server = await startPostgres({ tls: serving });
process.on("exit", () => void server.stop());
const role = "bench_run";
const password = randomBytes(18).toString("base64url");
const direct = `postgres://${role}:${password}@127.0.0.1:${server.port}/kb?sslmode=require`;
await run("pgbench", ["-i", "-q", "-s", "10", server.url(undefined, undefined, "kb")]);
const admin = await server.connect(server.adminUser, server.adminPassword, "kb");
await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}' IN ROLE kb_read, kb_write`);
await admin.query(
  "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO kb_write",
);
await admin.end();

// pgbouncer in session mode, logging in to the server as the run role over verified TLS.
const bouncerPort = await freePort();
const caFile = join(work, "ca.crt");
writeFileSync(caFile, authority.certPem);
writeFileSync(
  join(work, "pgbouncer.ini"),
  `[databases]
kb = host=127.0.0.1 port=${server.port} dbname=kb user=${role} password=${password}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${bouncerPort}
unix_socket_dir =
auth_type = any
pool_mode = session
max_client_conn = 200
default_pool_size = 120
server_tls_sslmode = verify-ca
server_tls_ca_file = ${caFile}
logfile = ${work}/pgbouncer.log
pidfile = ${work}/pgbouncer.pid
`,
);
const postgresUser = readFileSync("/etc/passwd", "utf8")
  .split("\n")
  .map((line) => line.split(":"))
  .find((fields) => fields[0] === "postgres");
chmodSync(work, 0o755);
for (const file of readdirSync(work)) {
  chownSync(join(work, file), Number(postgresUser?.[2] ?? 0), Number(postgresUser?.[3] ?? 0));
}
chownSync(work, Number(postgresUser?.[2] ?? 0), Number(postgresUser?.[3] ?? 0));
start("setpriv", [
  `--reuid=${postgresUser?.[2] ?? 0}`,
  `--regid=${postgresUser?.[3] ?? 0}`,
  "--clear-groups",
  "pgbouncer",
  "-q",
  join(work, "pgbouncer.ini"),
]);
const bouncer = `postgres://bench@127.0.0.1:${bouncerPort}/kb`;

// The real sidecar, granted kb-postgres (read, write) by the credential API.
const credential = {
  type: "postgres",
  host: "127.0.0.1",
  port: server.port,
  database: "kb",
  sslMode: "verify-full",
  caPem: authority.certPem,
  username: role,
  password,
  dynamic: true,
};
const grant = { connection: "kb-postgres", type: "postgres", actions: ["read", "write"] };
const operatorProcess = start(process.execPath, [join(repo, "bench/lib/credential-api.ts")], {
  KB_POSTGRES: JSON.stringify({ credential, grant }),
});
const [line] = (await once(operatorProcess.stdout as NodeJS.ReadableStream, "data")) as [Buffer];
const operator = JSON.parse(line.toString()) as { url: string; caPem: string };
writeFileSync(join(work, "token"), "pod-token\n");

async function startSidecar(
  listeners: Record<string, number>,
): Promise<{ child: ChildProcess; admin: number }> {
  const adminPort = await freePort();
  const child = start(join(repo, "sidecar/bin/sidecar"), [], {
    LGJIT_RUN: testIdentity.run,
    LGJIT_RUN_UID: testIdentity.runUid,
    LGJIT_NAMESPACE: testIdentity.namespace,
    LGJIT_POD_NAME: testIdentity.podName,
    LGJIT_POD_UID: testIdentity.podUid,
    LGJIT_OPERATOR_URL: operator.url,
    LGJIT_OPERATOR_CA: operator.caPem,
    LGJIT_TOKEN_FILE: join(work, "token"),
    LGJIT_STATE_DIR: mkdtempSync(join(work, "state-")),
    LGJIT_LISTENERS: JSON.stringify(listeners),
    LGJIT_PROXY_PORT: String(await freePort()),
    LGJIT_ADMIN_PORT: String(adminPort),
    LGJIT_LOG_LEVEL: "warn",
  });
  await waitFor(
    "the sidecar to be ready",
    async () =>
      (await fetch(`http://127.0.0.1:${adminPort}/ready`).catch(() => undefined))?.status === 200,
    30_000,
  );
  return { child, admin: adminPort };
}
const sidecarPort = await freePort();
const { child: sidecar } = await startSidecar({
  "kb-postgres": sidecarPort,
  "kb-api": await freePort(),
});
const sidecarUrl = `postgres://graph@127.0.0.1:${sidecarPort}/kb`;
const pid = sidecar.pid ?? 0;
await new Promise((resolve) => setTimeout(resolve, 2_000));
const idleWithParser = rssMb(pid);
// The same sidecar granted HTTP only never loads the parser.
const { child: httpOnly } = await startSidecar({ "kb-api": await freePort() });
await new Promise((resolve) => setTimeout(resolve, 2_000));
const idleWithoutParser = rssMb(httpOnly.pid ?? 0);
httpOnly.kill("SIGTERM");

interface PgbenchResult {
  tps: number;
  latencyMs: number;
}
async function pgbench(url: string, args: string[]): Promise<PgbenchResult> {
  const { stdout } = await run("pgbench", ["-n", ...args, url], {
    env: { ...process.env, PGPASSWORD: "unused" },
    maxBuffer: 1 << 24,
  });
  const tps = Number(stdout.match(/tps = ([\d.]+)/)?.[1]);
  const latencyMs = Number(stdout.match(/latency average = ([\d.]+) ms/)?.[1]);
  if (!Number.isFinite(tps)) throw new Error(`pgbench printed no tps:\n${stdout}`);
  return { tps, latencyMs };
}

const targets = { direct, pgbouncer: bouncer, sidecar: sidecarUrl } as const;
type Target = keyof typeof targets;
const modes = ["simple", "extended", "prepared"] as const;
const scripts = { "select-only": ["-S"], "tpc-b": [] as string[] } as const;

phase("warming up direct, pgbouncer and sidecar");
// Warm up every path (JIT, pools, caches).
for (const url of Object.values(targets)) await pgbench(url, ["-S", "-c", "2", "-T", "2"]);

const results = new Map<string, PgbenchResult>();
for (const [script, flags] of Object.entries(scripts)) {
  for (const mode of modes) {
    for (const [target, url] of Object.entries(targets)) {
      phase(`${script}, ${mode} mode, ${target}`);
      results.set(
        `${script}/${mode}/${target}`,
        await pgbench(url, [
          ...flags,
          "-M",
          mode,
          "-c",
          String(clients),
          "-j",
          "2",
          "-T",
          String(seconds),
        ]),
      );
    }
  }
}

// A fixed rate below saturation, simple mode (every statement parsed), per-transaction log.
const fixed: Record<string, { p50: number; p99: number }> = {};
let sidecarCpu = 0;
for (const [target, url] of Object.entries(targets) as [Target, string][]) {
  phase(`${rate} tx/s fixed, ${target}`);
  const prefix = join(work, `fixed-${target}`);
  const cpuBefore = target === "sidecar" ? cpuSeconds(pid) : 0;
  await pgbench(url, [
    "-S",
    "-M",
    "simple",
    "-c",
    String(clients),
    "-j",
    "2",
    "-R",
    String(rate),
    "-T",
    String(seconds),
    "-l",
    `--log-prefix=${prefix}`,
  ]);
  if (target === "sidecar") sidecarCpu = (cpuSeconds(pid) - cpuBefore) / seconds;
  const latencies: number[] = [];
  for (const file of readdirSync(work).filter((name) => name.startsWith(`fixed-${target}`))) {
    for (const entry of readFileSync(join(work, file), "utf8").split("\n")) {
      const micros = Number(entry.split(" ")[2]);
      if (Number.isFinite(micros) && entry) latencies.push(micros / 1000);
    }
  }
  fixed[target] = { p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

// The parser's cost for the statement the fixed-rate run sends, measured here.
await loadParser();
const statement = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
const parses = 20_000;
const parseStarted = performance.now();
for (let i = 0; i < parses; i++) classifyQuery(statement);
const parseMicros = ((performance.now() - parseStarted) * 1000) / parses;
const parserShare = (parseMicros * rate) / 1e6 / sidecarCpu;

phase("100 idle client connections");
const rssBeforeClients = rssMb(pid);
const idle: pg.Client[] = [];
for (let i = 0; i < 100; i++) {
  const client = new pg.Client({ connectionString: sidecarUrl, password: "unused" });
  client.on("error", (error) => phase(`idle client ${i}: ${error.message}`));
  await client.connect();
  idle.push(client);
}
await new Promise((resolve) => setTimeout(resolve, 1_000));
const rssIdleClients = rssMb(pid);
await Promise.all(idle.map((client) => client.end()));

phase(`streaming ${streamMb} MB through psql`);
// Streaming a large result through psql (a cursor of 1,000 rows at a time) to /dev/null, RSS
// sampled every 50 ms.
await new Promise((resolve) => setTimeout(resolve, 1_000));
const rssBeforeStream = rssMb(pid);
let rssPeakStream = rssBeforeStream;
const sampler = setInterval(() => {
  rssPeakStream = Math.max(rssPeakStream, rssMb(pid));
}, 50);
const rows = streamMb * 1024;
const streamStarted = performance.now();
await run(
  "sh",
  [
    "-c",
    `psql "${sidecarUrl}" -X -q -v FETCH_COUNT=1000 -c "SELECT repeat('x', 1000) FROM generate_series(1, ${rows})" > /dev/null`,
  ],
  {
    env: { ...process.env, PGPASSWORD: "unused" },
  },
);
const streamSeconds = (performance.now() - streamStarted) / 1000;
clearInterval(sampler);

const ratio = (a: number, b: number) => (a / b).toFixed(2);
console.log(
  `\nPostgres data path: pgbench, ${clients} clients, ${seconds} s per run, scale 10, TLS to the server everywhere`,
);
console.log(
  "| script | mode | direct tps | pgbouncer tps | sidecar tps | sidecar/pgbouncer | sidecar/direct | latency direct / pgbouncer / sidecar |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const script of Object.keys(scripts)) {
  for (const mode of modes) {
    const get = (target: Target) =>
      results.get(`${script}/${mode}/${target}`) ?? { tps: 0, latencyMs: 0 };
    const [d, b, s] = [get("direct"), get("pgbouncer"), get("sidecar")];
    console.log(
      `| ${script} | ${mode} | ${d.tps.toFixed(0)} | ${b.tps.toFixed(0)} | ${s.tps.toFixed(0)} | ${ratio(s.tps, b.tps)} | ${ratio(s.tps, d.tps)} | ${ms(d.latencyMs)} / ${ms(b.latencyMs)} / ${ms(s.latencyMs)} |`,
    );
  }
}
const tpsRatios = (against: Target) =>
  [...results.keys()]
    .filter((key) => key.endsWith("/sidecar"))
    .map(
      (key) =>
        (results.get(key)?.tps ?? 0) / (results.get(key.replace(/sidecar$/, against))?.tps ?? 1),
    );
console.log(
  `median sidecar/pgbouncer tps: ${median(tpsRatios("pgbouncer")).toFixed(2)} (target >= 0.8); median sidecar/direct: ${median(tpsRatios("direct")).toFixed(2)} (target >= 0.5)`,
);
console.log(`\nfixed rate ${rate} tx/s, select-only, simple mode:`);
for (const target of Object.keys(targets) as Target[]) {
  const row = fixed[target] ?? { p50: 0, p99: 0 };
  const added = target === "direct" ? "" : `, added p99 ${ms(row.p99 - (fixed.direct?.p99 ?? 0))}`;
  console.log(`  ${target}: p50 ${ms(row.p50)}, p99 ${ms(row.p99)}${added}`);
}
console.log(
  `sidecar added p99: ${ms((fixed.sidecar?.p99 ?? 0) - (fixed.direct?.p99 ?? 0))} (target <= 1 ms); pgbouncer added p99: ${ms((fixed.pgbouncer?.p99 ?? 0) - (fixed.direct?.p99 ?? 0))}`,
);
console.log(
  `sidecar CPU per 1,000 statements/s: ${((sidecarCpu * 1000) / rate).toFixed(3)} vCPU; parse and classify ${parseMicros.toFixed(1)} µs per statement = ${(parserShare * 100).toFixed(1)}% of the sidecar's CPU at that rate`,
);
console.log(
  `sidecar RSS idle: ${idleWithParser.toFixed(0)} MB with the parser loaded, ${idleWithoutParser.toFixed(0)} MB without (HTTP only)`,
);
console.log(
  `sidecar RSS with 100 idle client connections: ${rssIdleClients.toFixed(0)} MB (${rssBeforeClients.toFixed(0)} MB before they connected, after the load above)`,
);
console.log(
  `sidecar RSS while streaming ${streamMb} MB (${(streamMb / streamSeconds).toFixed(0)} MB/s): ${rssBeforeStream.toFixed(0)} MB before, ${rssPeakStream.toFixed(0)} MB peak, growth ${(rssPeakStream - rssBeforeStream).toFixed(1)} MB (target <= 32 MB)`,
);

const stopped = once(sidecar, "exit");
sidecar.kill("SIGTERM");
await stopped;
await server.stop();
process.exit(0);
