// The chart's RBAC is what the operator needs: the real operator, running as the chart's
// ServiceAccount with nothing but the chart's roles, takes a run from creation through
// issuance to revocation without one request refused.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CoreV1Api, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import {
  clusterDir,
  createTestNamespace,
  eventually,
  kubeConfigFor,
  repoRoot,
  type TestNamespace,
} from "../lib/cluster.ts";
import { CredentialApiClient, podOfRun, podToken } from "../lib/credentials.ts";
import { type OperatorProcess, startOperator } from "../lib/operator.ts";
import {
  createRun,
  deleteRun,
  readRun,
  runManifest,
  setUpBearerApiNamespace,
  waitForPhase,
} from "../lib/runs.ts";

const admin = kubeConfigFor("admin");
const access = [{ connection: "kb-api", actions: ["read" as const] }];

function sh(command: string, args: string[], input?: string): string {
  const result = spawnSync(command, args, { encoding: "utf8", input });
  assert.equal(result.status, 0, `${command} ${args.join(" ")}:\n${result.stdout}${result.stderr}`);
  return result.stdout;
}

describe("the operator with only the chart's RBAC", () => {
  let system: TestNamespace;
  let ns: TestNamespace;
  let operator: OperatorProcess;
  let release: string;

  before(async () => {
    system = await createTestNamespace("lgjit-rbac");
    ns = await createTestNamespace("rbac-runs");
    // The operator harness names the webhooks langgraph-jit-<namespace>: so does this release.
    release = `langgraph-jit-${system.name}`;
    const rendered = sh(join(clusterDir, "bin", "helm"), [
      "template",
      release,
      join(repoRoot, "charts", "langgraph-jit"),
      "--namespace",
      system.name,
      "--kube-version",
      "1.34.4",
      "--show-only",
      "templates/serviceaccount.yaml",
      "--show-only",
      "templates/rbac.yaml",
    ]);
    sh(
      join(clusterDir, "bin", "kubectl"),
      ["--kubeconfig", join(clusterDir, "admin.kubeconfig"), "apply", "-f", "-"],
      rendered,
    );
    const token = await admin.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
      namespace: system.name,
      name: release,
      body: { spec: { expirationSeconds: 3600 } },
    });
    const cluster = admin.getCurrentCluster();
    const kubeconfig = join(clusterDir, `${release}.kubeconfig`);
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [
          {
            name: "test",
            cluster: {
              server: cluster?.server,
              "certificate-authority-data": cluster?.caData,
            },
          },
        ],
        users: [{ name: release, user: { token: token.status?.token } }],
        contexts: [{ name: "chart", context: { cluster: "test", user: release } }],
        "current-context": "chart",
      }),
    );
    operator = await startOperator(system.name, [], kubeconfig);
    await setUpBearerApiNamespace(ns.name, "rbac-only");
  });

  after(async () => {
    await ns?.remove();
    await operator?.remove();
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    const ignore = () => undefined;
    await rbac.deleteClusterRole({ name: release }).catch(ignore);
    await rbac.deleteClusterRoleBinding({ name: release }).catch(ignore);
    await rbac.deleteClusterRoleBinding({ name: `${release}-auth-delegator` }).catch(ignore);
    await rbac.deleteClusterRole({ name: `${release}-session-reader` }).catch(ignore);
    await rbac
      .deleteNamespacedRoleBinding({ namespace: "kube-system", name: `${release}-front-proxy` })
      .catch(ignore);
    await system?.remove();
  });

  it("runs, issues and revokes, and is refused nothing", async () => {
    await createRun("alice", ns.name, runManifest("least", { access }));
    await waitForPhase(ns.name, "least", "Running");
    const pod = await podOfRun(ns.name, "least");
    const api = new CredentialApiClient(operator);
    try {
      const answer = await api.issue(await podToken(pod));
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      await eventually(
        "the credential status",
        async () => (await readRun(ns.name, "least"))?.status?.credential?.issuedAt,
      );
      await deleteRun("alice", ns.name, "least");
      await eventually("the run to be finalized and gone", async () =>
        (await readRun(ns.name, "least")) ? undefined : true,
      );
    } finally {
      await api.close();
    }
    const log = readFileSync(operator.logFile, "utf8");
    assert.doesNotMatch(log, /forbidden|"code":403/i, "the operator was refused a request");
  });
});
