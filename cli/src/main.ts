// kubectl-jit: langgraph-jit's kubectl plugin. It reads through the API server as the
// kubeconfig's user, so the cluster's own authentication and RBAC decide what it may see.
import { parseArgs } from "node:util";
import { errorMessage } from "../../api/errors.ts";
import { type RunSession, sessionsApi, sessionsApiVersion } from "../../api/session-events.ts";
import { ApiError, contextNamespace, getJson, loadKubeConfig } from "./kube-api.ts";
import { timeline } from "./session-timeline.ts";

export const usage = `kubectl jit: langgraph-jit's kubectl plugin

Usage:
  kubectl jit logs RUN [-n NAMESPACE] [-o text|json] [--chunk-size N]

Commands:
  logs   every request, denial and tunnel the run's sidecar recorded, oldest first
         (the run's object may be deleted: its latest run of that name is shown)

Options:
  -n, --namespace NAME   the run's namespace (default: the context's, else "default")
  -o, --output FORMAT    text: a timeline (default); json: one JSON object per event
      --chunk-size N     events asked for per request, 1-${sessionsApi.maxLimit} (default ${sessionsApi.defaultLimit})
      --kubeconfig FILE  the kubeconfig (default: $KUBECONFIG, then ~/.kube/config)
      --context NAME     the kubeconfig context (default: the current one)
  -h, --help             this help
`;

export class UsageError extends Error {}

interface LogsCommand {
  run: string;
  namespace: string | undefined;
  output: "text" | "json";
  chunkSize: number;
  kubeconfig: string | undefined;
  context: string | undefined;
}

function readArgs(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        namespace: { type: "string", short: "n" },
        output: { type: "string", short: "o", default: "text" },
        "chunk-size": { type: "string", default: String(sessionsApi.defaultLimit) },
        kubeconfig: { type: "string" },
        context: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }
}

export function parseCommand(argv: string[]): LogsCommand | "help" {
  const { values, positionals } = readArgs(argv);
  if (values.help || positionals.length === 0) return "help";
  const [command, run, ...rest] = positionals;
  if (command !== "logs") throw new UsageError(`unknown command "${command}": try logs`);
  if (!run) throw new UsageError("logs needs the run's name");
  if (rest.length > 0) throw new UsageError(`unexpected arguments: ${rest.join(" ")}`);
  if (values.output !== "text" && values.output !== "json") {
    throw new UsageError(`--output must be text or json, not "${values.output}"`);
  }
  const chunkSize = Number(values["chunk-size"]);
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > sessionsApi.maxLimit) {
    throw new UsageError(
      `--chunk-size must be a whole number from 1 to ${sessionsApi.maxLimit}, not "${values["chunk-size"]}"`,
    );
  }
  return {
    run,
    namespace: values.namespace,
    output: values.output,
    chunkSize,
    kubeconfig: values.kubeconfig,
    context: values.context,
  };
}

async function logs(command: LogsCommand): Promise<void> {
  const kc = loadKubeConfig(command);
  const namespace = command.namespace ?? contextNamespace(kc);
  const base = `/apis/${sessionsApiVersion}/namespaces/${encodeURIComponent(namespace)}/${sessionsApi.resource}/${encodeURIComponent(command.run)}`;
  const events: RunSession["events"] = [];
  let session: RunSession | undefined;
  let page: string | undefined;
  do {
    const query = `?limit=${command.chunkSize}${page ? `&continue=${encodeURIComponent(page)}` : ""}`;
    session = await getJson<RunSession>(kc, `${base}${query}`);
    // JSON streams page by page; the timeline aligns its columns over every event.
    if (command.output === "json") {
      for (const event of session.events) process.stdout.write(`${JSON.stringify(event)}\n`);
    } else {
      events.push(...session.events);
    }
    page = session.continue;
  } while (page);
  if (command.output === "text") process.stdout.write(timeline(session, events));
}

async function main(): Promise<number> {
  let command: LogsCommand | "help";
  try {
    command = parseCommand(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`error: ${errorMessage(error)}\nSee 'kubectl jit --help'.\n`);
    return 2;
  }
  if (command === "help") {
    process.stdout.write(usage);
    return 0;
  }
  try {
    await logs(command);
    return 0;
  } catch (error) {
    const message =
      error instanceof ApiError
        ? `Error from server (${error.reason}): ${error.message}`
        : `error: ${errorMessage(error)}`;
    process.stderr.write(`${message}\n`);
    return 1;
  }
}

if (import.meta.main) process.exitCode = await main();
