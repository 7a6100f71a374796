// kubectl-jit: langgraph-jit's kubectl plugin. It talks to the API server as the kubeconfig's
// user, so the cluster's own authentication and RBAC decide what it may see and do.
import { parseArgs } from "node:util";
import { errorMessage } from "../../api/errors.ts";
import { type RunSession, sessionsApi, sessionsApiVersion } from "../../api/session-events.ts";
import {
  decide,
  formatWaiting,
  type ListFormat,
  listWaiting,
  waitingFor,
  whoAmI,
} from "./approvals.ts";
import {
  ApiError,
  contextNamespace,
  getJson,
  type KubeTarget,
  loadKubeConfig,
} from "./kube-api.ts";
import { timeline } from "./session-timeline.ts";

export const usage = `kubectl jit: langgraph-jit's kubectl plugin

Usage:
  kubectl jit logs RUN [-n NAMESPACE] [-o text|json] [--chunk-size N]
  kubectl jit approvals [-n NAMESPACE | -A] [-o text|wide|json|yaml]
  kubectl jit approve NAME --reason TEXT [-n NAMESPACE]
  kubectl jit deny NAME --reason TEXT [-n NAMESPACE]

Commands:
  logs       every request, denial and tunnel the run's sidecar recorded, oldest first
             (the run's object may be deleted: its latest run of that name is shown)
  approvals  runs and held commands waiting for an approval you may give: not your own runs',
             not yet decided by you
  approve    approve a waiting run or held command by the NAME approvals shows (an Approval
             object, stamped with who you are); approving a command approves it alone
  deny       deny a waiting run or held command; one denial ends it

Options:
  -n, --namespace NAME   the namespace (default: the context's, else "default")
  -A, --all-namespaces   approvals: every namespace you may list runs in
  -o, --output FORMAT    logs: text (a timeline, default) or json (one object per event);
                         approvals: text (default), wide, json or yaml
      --reason TEXT      approve, deny: why (required; shown on the run, kept for audit)
      --chunk-size N     logs: events asked for per request, 1-${sessionsApi.maxLimit} (default ${sessionsApi.defaultLimit})
      --kubeconfig FILE  the kubeconfig (default: $KUBECONFIG, then ~/.kube/config)
      --context NAME     the kubeconfig context (default: the current one)
  -h, --help             this help
`;

export class UsageError extends Error {}

type Target = KubeTarget & { namespace: string | undefined };

export type Command =
  | (Target & { name: "logs"; run: string; output: "text" | "json"; chunkSize: number })
  | (Target & { name: "approvals"; allNamespaces: boolean; output: ListFormat })
  | (Target & { name: "approve" | "deny"; run: string; reason: string });

function readArgs(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        namespace: { type: "string", short: "n" },
        "all-namespaces": { type: "boolean", short: "A" },
        output: { type: "string", short: "o" },
        reason: { type: "string" },
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

export function parseCommand(argv: string[]): Command | "help" {
  const { values, positionals } = readArgs(argv);
  if (values.help || positionals.length === 0) return "help";
  const [command, run, ...rest] = positionals;
  const target: Target = {
    namespace: values.namespace,
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    ...(values.context ? { context: values.context } : {}),
  };
  const extra = command === "approvals" ? [run, ...rest].filter(Boolean) : rest;
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  switch (command) {
    case "logs": {
      if (!run) throw new UsageError("logs needs the run's name");
      const output = values.output ?? "text";
      if (output !== "text" && output !== "json") {
        throw new UsageError(`--output must be text or json, not "${output}"`);
      }
      const chunkSize = Number(values["chunk-size"]);
      if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > sessionsApi.maxLimit) {
        throw new UsageError(
          `--chunk-size must be a whole number from 1 to ${sessionsApi.maxLimit}, not "${values["chunk-size"]}"`,
        );
      }
      return { ...target, name: "logs", run, output, chunkSize };
    }
    case "approvals": {
      const output = values.output ?? "text";
      if (!["text", "wide", "json", "yaml"].includes(output)) {
        throw new UsageError(`--output must be text, wide, json or yaml, not "${output}"`);
      }
      if (values["all-namespaces"] && values.namespace) {
        throw new UsageError("--namespace and --all-namespaces exclude each other");
      }
      return {
        ...target,
        name: "approvals",
        allNamespaces: values["all-namespaces"] ?? false,
        output: output as ListFormat,
      };
    }
    case "approve":
    case "deny": {
      if (!run) throw new UsageError(`${command} needs the name of a run or held command`);
      const reason = values.reason?.trim();
      if (!reason) throw new UsageError(`${command} needs --reason: say why, for the audit trail`);
      if (reason.length > 1024) throw new UsageError("--reason is at most 1024 characters");
      return { ...target, name: command, run, reason };
    }
    default:
      throw new UsageError(`unknown command "${command}": try logs, approvals, approve or deny`);
  }
}

async function logs(command: Extract<Command, { name: "logs" }>): Promise<void> {
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

async function run(command: Command): Promise<void> {
  if (command.name === "logs") return logs(command);
  const kc = loadKubeConfig(command);
  if (command.name === "approvals") {
    const namespace = command.allNamespaces
      ? undefined
      : (command.namespace ?? contextNamespace(kc));
    const [user, { runs, held }] = await Promise.all([whoAmI(kc), listWaiting(kc, namespace)]);
    const waiting = waitingFor(user, runs, held);
    process.stdout.write(formatWaiting(waiting, command.output, command.allNamespaces, Date.now()));
    if (waiting.length === 0 && (command.output === "text" || command.output === "wide")) {
      const where = namespace ? `in namespace ${namespace}` : "in any namespace";
      process.stderr.write(`No runs wait for your approval ${where}.\n`);
    }
    return;
  }
  const namespace = command.namespace ?? contextNamespace(kc);
  const decision = command.name === "approve" ? "Approve" : "Deny";
  const { approval, what } = await decide(kc, namespace, command.run, decision, command.reason);
  process.stdout.write(
    `approval.langgraph-jit.dev/${approval.metadata?.name} created: ${decision} ${what}\n`,
  );
}

async function main(): Promise<number> {
  let command: Command | "help";
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
    await run(command);
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
