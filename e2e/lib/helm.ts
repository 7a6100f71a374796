// The chart as users install it, with the test node's locally built images.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { clusterDir, repoRoot } from "./cluster.ts";

export const localImages = {
  sidecar: "localhost/lgjit/sidecar:test",
  graph: "localhost/lgjit/graph:test",
};

/** helm as admin; fails the test with helm's output when it fails. */
export function helm(...args: string[]): void {
  const result = spawnSync(
    join(clusterDir, "bin", "helm"),
    [...args, "--kubeconfig", join(clusterDir, "admin.kubeconfig")],
    { encoding: "utf8" },
  );
  assert.equal(result.status, 0, `helm ${args.join(" ")}:\n${result.stdout}${result.stderr}`);
}

/** `helm install` (or, with upgrade, `helm upgrade`) of the chart, waiting for it to be ready. */
export function installChart(
  release: string,
  namespace: string,
  sets: string[] = [],
  verb: "install" | "upgrade" = "install",
): void {
  const images = [
    "image.repository=localhost/lgjit/operator,image.tag=test,image.pullPolicy=Never",
    `sidecar.image=${localImages.sidecar},sidecar.pullPolicy=Never`,
  ];
  helm(
    verb,
    release,
    join(repoRoot, "charts", "langgraph-jit"),
    "--namespace",
    namespace,
    ...[...images, ...sets].flatMap((set) => ["--set", set]),
    "--wait",
    "--timeout",
    "3m",
  );
}

export function uninstallChart(release: string, namespace: string): void {
  helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "2m");
}
