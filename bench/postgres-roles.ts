// Benchmark: dynamic run roles (ensureRunRole + dropRunRole, each on its own admin connection,
// as the operator does) against plain CREATE ROLE / DROP ROLE on an open connection, in the
// same run on the same local PostgreSQL, sequentially and with 8 at once.
import { randomUUID } from "node:crypto";
import pg from "pg";
import { startPostgres } from "../e2e/lib/postgres.ts";
import {
  dropRunRole,
  dynamicRoleName,
  ensureRunRole,
  generateRolePassword,
  type PostgresAdmin,
  runRoleComment,
} from "../operator/src/credentials/postgres-roles.ts";
import { median } from "./lib/stats.ts";

const perRound = Number(process.env.BENCH_PG_ROLES ?? 100);
const rounds = Number(process.env.BENCH_PG_ROUNDS ?? 5);
const concurrency = 8;

/** Runs `count` cycles with `workers` in parallel; returns cycles per second. */
async function cyclesPerSecond(
  count: number,
  workers: number,
  cycle: (worker: number, index: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      while (next < count) await cycle(worker, next++);
    }),
  );
  return count / ((performance.now() - started) / 1000);
}

const server = await startPostgres();
try {
  const admin: PostgresAdmin = {
    host: server.host,
    port: server.port,
    database: server.kb.database,
    sslMode: "disable",
    username: server.kb.adminUser,
    password: server.kb.adminPassword,
  };
  const { read, write } = server.kb.actionRoles;
  const plainClients = await Promise.all(
    Array.from({ length: concurrency }, () =>
      server.connect(admin.username, admin.password, admin.database),
    ),
  );

  const dynamicCycle = async () => {
    const run = { namespace: "bench", name: "kb-refresh", uid: randomUUID() };
    const name = dynamicRoleName(run, "kb-postgres");
    await ensureRunRole(admin, {
      name,
      password: generateRolePassword(),
      validUntil: new Date(Date.now() + 60 * 60 * 1000),
      memberOf: [read, write],
      comment: runRoleComment(run, "kb-postgres"),
    });
    await dropRunRole(admin, name);
  };
  // The same statements a person would type, with the same memberships, on an open session.
  const plainCycle = async (worker: number) => {
    const client = plainClients[worker] as pg.Client;
    const role = pg.escapeIdentifier(`bench_${randomUUID().replaceAll("-", "")}`);
    const password = pg.escapeLiteral(generateRolePassword());
    await client.query(`CREATE ROLE ${role} LOGIN PASSWORD ${password} IN ROLE ${read}, ${write}`);
    await client.query(`DROP ROLE ${role}`);
  };

  const results: Record<string, number[]> = {
    "plain, sequential": [],
    "dynamic, sequential": [],
    [`plain, ${concurrency} at once`]: [],
    [`dynamic, ${concurrency} at once`]: [],
  };
  // Warm-up: the first connections and catalog lookups are slower than the rest.
  await cyclesPerSecond(concurrency, concurrency, dynamicCycle);
  await cyclesPerSecond(concurrency, concurrency, plainCycle);
  for (let round = 0; round < rounds; round++) {
    // Interleaved, so drift on a noisy machine affects both sides alike.
    results["plain, sequential"]?.push(await cyclesPerSecond(perRound, 1, plainCycle));
    results["dynamic, sequential"]?.push(await cyclesPerSecond(perRound, 1, dynamicCycle));
    results[`plain, ${concurrency} at once`]?.push(
      await cyclesPerSecond(perRound * 2, concurrency, plainCycle),
    );
    results[`dynamic, ${concurrency} at once`]?.push(
      await cyclesPerSecond(perRound * 2, concurrency, dynamicCycle),
    );
  }
  await Promise.all(plainClients.map((client) => client.end()));

  console.log(
    `create+drop per second, median of ${rounds} rounds (${perRound} sequential / ${perRound * 2} concurrent cycles each)`,
  );
  for (const [mode, values] of Object.entries(results)) {
    console.log(
      `  ${mode.padEnd(22)} ${median(values).toFixed(1).padStart(7)}/s  (rounds: ${values.map((v) => v.toFixed(0)).join(", ")})`,
    );
  }
  for (const mode of ["sequential", `${concurrency} at once`]) {
    const ratio =
      median(results[`dynamic, ${mode}`] ?? []) / median(results[`plain, ${mode}`] ?? []);
    console.log(`  dynamic / plain, ${mode}: ${ratio.toFixed(2)}`);
  }
} finally {
  await server.stop();
}
