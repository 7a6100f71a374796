// Access to the real test cluster that e2e/cluster/up.sh starts, for end-to-end tests.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { statusOf } from "../../operator/src/kube/api-errors.ts";
import { loadKubeConfig } from "../../operator/src/kube/kube-config.ts";
import type { OidcUserName } from "../cluster/dex-config.ts";

export const repoRoot = join(import.meta.dirname, "..", "..");
export const clusterDir = process.env.LGJIT_CLUSTER_DIR ?? join(repoRoot, ".cluster");

/**
 * Identities with a kubeconfig in the cluster directory: client certificates (groups as O), and
 * `oidc/<user>`, Dex's users, whose kubeconfig gets an ID token from Dex (e2e/cluster/oidc-token.ts).
 */
export type Identity = "admin" | "alice" | "bob" | "mallory" | `oidc/${OidcUserName}`;

export function kubeConfigFor(identity: Identity): KubeConfig {
  const file = join(clusterDir, `${identity}.kubeconfig`);
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: bring the test cluster up with "make cluster-up"`);
  }
  return loadKubeConfig(file);
}

export { statusOf };

/** Runs an API call expected to fail and returns its HTTP status. */
export async function expectApiError(call: Promise<unknown>): Promise<number> {
  try {
    await call;
  } catch (error) {
    const status = statusOf(error);
    if (status === undefined) throw error;
    return status;
  }
  throw new Error("the API call succeeded where it was expected to fail");
}

/** Creates a namespace with a unique name; the returned function deletes it. */
export interface TestNamespace {
  name: string;
  /** Deletes the namespace and waits until it is gone. */
  remove(timeoutMs?: number): Promise<void>;
}

export async function createTestNamespace(prefix: string): Promise<TestNamespace> {
  const core = kubeConfigFor("admin").makeApiClient(CoreV1Api);
  const name = `${prefix}-${randomBytes(3).toString("hex")}`;
  await core.createNamespace({ body: { metadata: { name } } });
  return {
    name,
    // Waits until the namespace is gone, so finalizers (ours included) have run.
    remove: async (timeoutMs = 60_000) => {
      await core.deleteNamespace({ name }).catch((error: unknown) => {
        if (statusOf(error) !== 404) throw error;
      });
      await eventually(
        `namespace ${name} to be deleted`,
        async () =>
          core.readNamespace({ name }).then(
            () => undefined,
            (error: unknown) => statusOf(error) === 404,
          ),
        timeoutMs,
      );
    },
  };
}

/**
 * Polls check until it returns something other than undefined, null or false (a condition
 * that does not hold yet), or fails after timeoutMs with the last error it threw.
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | null | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
}

/**
 * `kubectl ...` as a test identity, stopped after timeoutMs (status null then: a command that
 * keeps running, like a port-forward that was let through).
 */
export function kubectlAs(identity: Identity, args: string[], timeoutMs = 60_000) {
  const result = spawnSync(join(clusterDir, "bin", "kubectl"), args, {
    encoding: "utf8",
    timeout: timeoutMs,
    env: {
      ...process.env,
      PATH: `${join(repoRoot, "cli", "bin")}:${process.env.PATH}`,
      KUBECONFIG: join(clusterDir, `${identity}.kubeconfig`),
    },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** `kubectl jit ...` as a test identity: the plugin found on PATH, as users install it. */
export function kubectlJit(identity: Identity, ...args: string[]) {
  return kubectlAs(identity, ["jit", ...args]);
}
