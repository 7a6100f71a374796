// Runs the example graph once: progress on stderr, one JSON summary line on stdout.
// Exit 0 when ok, 1 on any finding, 128 + the signal's number when stopped by SIGTERM/SIGINT.
// With GRAPH_SERVE_PORT it serves instead: each POST /invoke is one run (serve.ts).
import { constants } from "node:os";
import { runGraph } from "./graph.ts";
import { serveGraph } from "./serve.ts";

const log = (line: string) => process.stderr.write(`graph: ${line}\n`);
if (process.env.GRAPH_SERVE_PORT) {
  const port = Number(process.env.GRAPH_SERVE_PORT);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    log(
      `GRAPH_SERVE_PORT must be a port number, not ${JSON.stringify(process.env.GRAPH_SERVE_PORT)}`,
    );
    process.exit(2);
  }
  const server = serveGraph({ env: process.env, log });
  server.listen(port, () => log(`serving POST /invoke on port ${port}`));
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      server.closeAllConnections();
      server.close(() => process.exit(0));
    });
  }
} else {
  await runOnce();
}

async function runOnce(): Promise<void> {
  const controller = new AbortController();
  // As PID 1 in a container, node gets no default SIGTERM action: without this handler the
  // kubelet's SIGTERM at the run's deadline would be ignored until its SIGKILL.
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => controller.abort(signal));
  }

  const summary = await runGraph({
    env: process.env,
    signal: controller.signal,
    log,
  });
  process.stdout.write(`${JSON.stringify(summary)}\n`);

  const stoppedBy = controller.signal.reason as "SIGTERM" | "SIGINT" | undefined;
  process.exitCode = summary.ok ? 0 : stoppedBy ? 128 + constants.signals[stoppedBy] : 1;
}
