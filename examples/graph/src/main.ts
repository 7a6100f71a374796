// Runs the example graph once: progress on stderr, one JSON summary line on stdout.
// Exit 0 when ok, 1 on any finding, 128 + the signal's number when stopped by SIGTERM/SIGINT.
import { constants } from "node:os";
import { runGraph } from "./graph.ts";

const controller = new AbortController();
// As PID 1 in a container, node gets no default SIGTERM action: without this handler the
// kubelet's SIGTERM at the run's deadline would be ignored until its SIGKILL.
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => controller.abort(signal));
}

const summary = await runGraph({
  env: process.env,
  signal: controller.signal,
  log: (line) => process.stderr.write(`graph: ${line}\n`),
});
process.stdout.write(`${JSON.stringify(summary)}\n`);

const stoppedBy = controller.signal.reason as "SIGTERM" | "SIGINT" | undefined;
process.exitCode = summary.ok ? 0 : stoppedBy ? 128 + constants.signals[stoppedBy] : 1;
