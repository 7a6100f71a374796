// Benchmark: what Node.js on this machine can relay at all, to read bench/postgres-proxy.ts by.
// pgbench's select-only script (8 clients, simple mode, no TLS) against PostgreSQL directly and
// through a bare Node TCP relay (two sockets piped, nothing parsed, checked or recorded): the
// ratio is the ceiling any proxy in this runtime starts from.
import { execFile } from "node:child_process";
import { connect, createServer } from "node:net";
import { promisify } from "node:util";
import { startPostgres } from "../e2e/lib/postgres.ts";

const run = promisify(execFile);
const seconds = Number(process.env.BENCH_PG_SECONDS ?? 10);
const server = await startPostgres();
const url = (port: number) =>
  `postgres://${server.adminUser}:${encodeURIComponent(server.adminPassword)}@127.0.0.1:${port}/kb?sslmode=disable`;
await run("pgbench", ["-i", "-q", "-s", "10", url(server.port)]);
const relay = createServer((client) => {
  const upstream = connect({ host: "127.0.0.1", port: server.port, noDelay: true });
  client.setNoDelay(true);
  client.pipe(upstream);
  upstream.pipe(client);
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
});
await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
const relayPort = (relay.address() as { port: number }).port;
const tps: Record<string, number> = {};
for (const [name, port] of [
  ["direct", server.port],
  ["bare Node relay", relayPort],
] as const) {
  const args = ["-n", "-S", "-c", "8", "-j", "2", "-T", String(seconds), "-M", "simple", url(port)];
  const { stdout } = await run("pgbench", args);
  tps[name] = Number(stdout.match(/tps = ([\d.]+)/)?.[1]);
}
console.log(
  `\nNode relay ceiling (pgbench -S, 8 clients, simple, no TLS, ${seconds} s): direct ${tps.direct?.toFixed(0)} tps, bare Node relay ${tps["bare Node relay"]?.toFixed(0)} tps, ratio ${((tps["bare Node relay"] ?? 0) / (tps.direct ?? 1)).toFixed(2)}`,
);
relay.close();
await server.stop();
process.exit(0);
