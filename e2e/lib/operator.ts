// Runs the real operator process against the test cluster, as `make run` would.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { after, before } from "node:test";
import { AdmissionregistrationV1Api, CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import type { AccessPolicy } from "../../api/v1alpha1.ts";
import {
  clusterDir,
  createTestNamespace,
  eventually,
  kubeConfigFor,
  repoRoot,
  statusOf,
  type TestNamespace,
} from "./cluster.ts";
import { setUpRunNamespace } from "./runs.ts";

const operatorCommand = join(repoRoot, "operator", "bin", "operator");

// An operator must not outlive the test process that started it, even when that process
// crashes: a stray one would keep its fail-closed webhooks answering for a finished test.
const children = new Set<ChildProcess>();

/** A child process of the test (an operator, a Dex) that must not outlive it. */
export function killOnExit<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

const killChildren = () => {
  for (const child of children) child.kill("SIGKILL");
};
process.on("exit", killChildren);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killChildren();
    process.kill(process.pid, signal);
  });
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === "string") throw new Error("no port");
  return address.port;
}

export interface OperatorProcess {
  namespace: string;
  listenPort: number;
  /** The HTTPS base URL of the webhooks and the credential API (sidecars' LGJIT_OPERATOR_URL). */
  url: string;
  /** The CA bundle the operator's HTTPS certificate chains to. */
  caPem(): Promise<string>;
  /** The running process's id (for resource measurements). */
  pid(): number;
  metricsUrl: string;
  logFile: string;
  /** SIGTERM, as Kubernetes stops a pod. */
  stop(): Promise<void>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
  /** Starts it again with the same settings. */
  restart(): Promise<void>;
  /** Stops it and removes its webhook configurations so no other suite is blocked by them. */
  remove(): Promise<void>;
}

/** The flags of an operator whose own namespace is `namespace`, listening on loopback. */
export function operatorArgs(
  namespace: string,
  listenPort: number,
  metricsPort: number,
  extra: string[],
): string[] {
  return [
    "--kubeconfig",
    join(clusterDir, "admin.kubeconfig"),
    "--namespace",
    namespace,
    "--listen",
    `127.0.0.1:${listenPort}`,
    "--metrics-listen",
    `127.0.0.1:${metricsPort}`,
    "--webhook-url",
    `https://127.0.0.1:${listenPort}`,
    "--operator-url",
    `https://127.0.0.1:${listenPort}`,
    "--webhook-configuration-name",
    `langgraph-jit-${namespace}`,
    "--identity",
    `e2e-${listenPort}`,
    // One store per test namespace: replicas of one operator share it, as on one volume.
    "--session-store",
    `sqlite:${join(clusterDir, "logs", `sessions-${namespace}.db`)}`,
    ...extra,
  ];
}

async function accepts(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise<boolean>((resolve) => {
    const socket = connect(Number(port), hostname);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * Deletes webhook configurations left by an operator of an earlier test process that died:
 * they fail closed, so they would refuse every run of every later test.
 */
async function removeStaleWebhooks(): Promise<void> {
  const api = kubeConfigFor("admin").makeApiClient(AdmissionregistrationV1Api);
  const configurations = [
    ...(await api.listMutatingWebhookConfiguration()).items.map((c) => ["mutating", c] as const),
    ...(await api.listValidatingWebhookConfiguration()).items.map(
      (c) => ["validating", c] as const,
    ),
  ];
  for (const [kind, configuration] of configurations) {
    const name = configuration.metadata?.name ?? "";
    const url = configuration.webhooks?.[0]?.clientConfig.url;
    if (!name.startsWith("langgraph-jit-") || !url || (await accepts(url))) continue;
    if (kind === "mutating")
      await api.deleteMutatingWebhookConfiguration({ name }).catch(() => undefined);
    else await api.deleteValidatingWebhookConfiguration({ name }).catch(() => undefined);
  }
}

/** `operator install` with these flags (CRDs, as admin), after clearing stale webhooks. */
export async function installOperator(args: string[]): Promise<void> {
  await removeStaleWebhooks();
  const installed = spawnSync(operatorCommand, ["install", ...args], { encoding: "utf8" });
  if (installed.status !== 0)
    throw new Error(`operator install failed:\n${installed.stderr}${installed.stdout}`);
  await eventually("the CRDs to be served", async () => {
    const custom = kubeConfigFor("admin").makeApiClient(CustomObjectsApi);
    for (const plural of ["langgraphruns", "connections", "accesspolicies"]) {
      await custom.listClusterCustomObject({
        group: "langgraph-jit.dev",
        version: "v1alpha1",
        plural,
      });
    }
    return true;
  });
}

/** Deletes the webhook configurations of the operator whose own namespace is `namespace`. */
export async function removeWebhooks(namespace: string): Promise<void> {
  const api = kubeConfigFor("admin").makeApiClient(AdmissionregistrationV1Api);
  const name = `langgraph-jit-${namespace}`;
  const ignoreMissing = (error: unknown) => {
    if (statusOf(error) !== 404) throw error;
  };
  await api.deleteMutatingWebhookConfiguration({ name }).catch(ignoreMissing);
  await api.deleteValidatingWebhookConfiguration({ name }).catch(ignoreMissing);
}

/**
 * Installs the CRDs (as admin) and starts an operator whose own namespace is `namespace`,
 * running with `runKubeconfig` when given (an identity with only the chart's RBAC), else admin.
 */
export async function startOperator(
  namespace: string,
  extra: string[] = [],
  runKubeconfig?: string,
): Promise<OperatorProcess> {
  const listenPort = await freePort();
  const metricsPort = await freePort();
  const args = operatorArgs(namespace, listenPort, metricsPort, extra);
  const runArgs = runKubeconfig ? [...args, "--kubeconfig", runKubeconfig] : args;
  await installOperator(args);

  mkdirSync(join(clusterDir, "logs"), { recursive: true });
  const logFile = join(clusterDir, "logs", `operator-${namespace}.log`);
  const metricsUrl = `http://127.0.0.1:${metricsPort}`;
  let child: ChildProcess | undefined;

  const launch = async () => {
    const log = createWriteStream(logFile, { flags: "a" });
    child = killOnExit(
      spawn(operatorCommand, ["run", ...runArgs], { stdio: ["ignore", "pipe", "pipe"] }),
    );
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const started = child;
    await eventually(
      "the operator to be ready",
      async () => {
        if (started.exitCode !== null)
          throw new Error(`operator exited with ${started.exitCode}; see ${logFile}`);
        const response = await fetch(`${metricsUrl}/readyz`).catch(() => undefined);
        return response?.ok;
      },
      30_000,
    );
  };

  const signal = async (name: NodeJS.Signals) => {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill(name);
    await exited;
  };

  await launch();
  return {
    namespace,
    listenPort,
    url: `https://127.0.0.1:${listenPort}`,
    caPem: async () => {
      const secret = await kubeConfigFor("admin")
        .makeApiClient(CoreV1Api)
        .readNamespacedSecret({ namespace, name: "langgraph-jit-webhook-tls" });
      return Buffer.from(secret.data?.["ca-bundle.crt"] ?? "", "base64").toString("utf8");
    },
    pid: () => child?.pid ?? -1,
    metricsUrl,
    logFile,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    restart: launch,
    remove: async () => {
      await signal("SIGTERM");
      await removeWebhooks(namespace);
    },
  };
}

export interface OperatorSuite {
  /** The operator's own namespace. */
  system: TestNamespace;
  /** Where the suite creates its runs. */
  ns: TestNamespace;
  operator: OperatorProcess;
}

/**
 * Registers hooks giving the calling suite an operator of its own and a namespace for its
 * runs (with the Connections, policy and RBAC of setUpRunNamespace when `runs` is set),
 * removed afterwards: runs first, so the operator can finalize them.
 */
export function useOperator(
  prefix: string,
  options: { runs?: boolean; policy?: Partial<AccessPolicy["spec"]> } = {},
): OperatorSuite {
  const suite = {} as OperatorSuite;
  before(async () => {
    suite.system = await createTestNamespace("lgjit-system");
    suite.ns = await createTestNamespace(prefix);
    suite.operator = await startOperator(suite.system.name);
    if (options.runs) await setUpRunNamespace(suite.ns.name, options.policy);
  });
  after(async () => {
    await suite.ns?.remove();
    await suite.operator?.remove();
    await suite.system?.remove();
  });
  return suite;
}
