// Runs the real sidecar process as a run's pod would, with the env the Job builder gives it and
// a TokenRequest-bound token in its token file, against the test's operator.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import type { LangGraphRun } from "../../api/v1alpha1.ts";
import { clusterDir, repoRoot } from "./cluster.ts";
import { freePort, type OperatorProcess } from "./operator.ts";

const sidecarCommand = join(repoRoot, "sidecar", "bin", "sidecar");
const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

export interface SidecarProcess {
  adminUrl: string;
  pid: number;
  tokenFile: string;
  /** What it has logged so far (stdout and stderr), also kept in .cluster/logs. */
  output(): string;
  /** SIGTERM; resolves with the exit code and how long it took. */
  stop(): Promise<{ code: number | null; ms: number }>;
  /** SIGKILL, as the kernel's OOM killer would: nothing is flushed, the state folder stays. */
  kill(): Promise<void>;
}

export async function startSidecar(options: {
  operator: OperatorProcess;
  run: LangGraphRun;
  pod: V1Pod;
  token: string;
  operatorUrl?: string;
  /** The emptyDir a restarted sidecar finds again; a new temporary folder otherwise. */
  stateDir?: string;
  /** Loopback ports by connection name (LGJIT_LISTENERS). */
  listeners?: Record<string, number>;
}): Promise<SidecarProcess> {
  const dir = options.stateDir ?? mkdtempSync(join(tmpdir(), "lgjit-sidecar-"));
  const tokenFile = join(dir, "token");
  writeFileSync(tokenFile, options.token);
  const adminPort = await freePort();
  const env = {
    PATH: process.env.PATH ?? "",
    LGJIT_RUN: options.run.metadata?.name ?? "",
    LGJIT_RUN_UID: options.run.metadata?.uid ?? "",
    LGJIT_OPERATOR_URL: options.operatorUrl ?? options.operator.url,
    LGJIT_OPERATOR_CA: await options.operator.caPem(),
    LGJIT_TOKEN_FILE: tokenFile,
    LGJIT_STATE_DIR: dir,
    LGJIT_LISTENERS: JSON.stringify(options.listeners ?? {}),
    LGJIT_PROXY_PORT: String(await freePort()),
    LGJIT_ADMIN_PORT: String(adminPort),
    LGJIT_NAMESPACE: options.pod.metadata?.namespace ?? "",
    LGJIT_POD_NAME: options.pod.metadata?.name ?? "",
    LGJIT_POD_UID: options.pod.metadata?.uid ?? "",
  };
  const child = spawn(sidecarCommand, [], { env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const log = createWriteStream(
    join(clusterDir, "logs", `sidecar-${options.pod.metadata?.name}.log`),
  );
  let output = "";
  for (const stream of [child.stdout, child.stderr]) {
    stream?.pipe(log);
    stream?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
  }
  return {
    adminUrl: `http://127.0.0.1:${adminPort}`,
    pid: child.pid ?? -1,
    tokenFile,
    output: () => output,
    stop: async () => {
      const started = performance.now();
      const exited = new Promise<number | null>((resolve) => {
        if (child.exitCode !== null) resolve(child.exitCode);
        else child.once("exit", (code) => resolve(code));
      });
      child.kill("SIGTERM");
      const code = await exited;
      children.delete(child);
      if (!options.stateDir) rmSync(dir, { recursive: true, force: true });
      return { code, ms: performance.now() - started };
    },
    kill: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
      children.delete(child);
    },
  };
}

/** The sidecar's /ready status code, or 0 while it does not answer. */
export async function readiness(sidecar: SidecarProcess): Promise<number> {
  const response = await fetch(`${sidecar.adminUrl}/ready`).catch(() => undefined);
  return response?.status ?? 0;
}
