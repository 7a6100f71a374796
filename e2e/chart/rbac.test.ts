// The chart's RBAC is what the operator needs: the real operator, running as the chart's
// ServiceAccount with nothing but the chart's roles, takes a run from creation through
// issuance to revocation without one request refused: with namespaced Connections, and with
// the platform's ClusterConnections alone, reading Secrets only where the platform keeps them.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CoreV1Api, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { patchAs } from "../../operator/src/kube/meta.ts";
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
  createObject,
  createRun,
  customObjects,
  deleteClusterConnection,
  deleteRun,
  readRun,
  runManifest,
  setUpBearerApiNamespace,
  waitForPhase,
} from "../lib/runs.ts";

const admin = kubeConfigFor("admin");
const access = [{ connection: "kb-api", actions: ["read" as const] }];

function sh(command: string, args: string[], input?: string, statuses = [0]): string {
  const result = spawnSync(command, args, { encoding: "utf8", input });
  assert.ok(
    statuses.includes(result.status ?? -1),
    `${command} ${args.join(" ")}:\n${result.stdout}${result.stderr}`,
  );
  return result.stdout;
}

const kubectl = (args: string[], input?: string, statuses?: number[]) =>
  sh(
    join(clusterDir, "bin", "kubectl"),
    ["--kubeconfig", join(clusterDir, "admin.kubeconfig"), ...args],
    input,
    statuses,
  );

/**
 * The chart installed one way: with namespaced Connections (the default), or with only the
 * platform's ClusterConnections, the operator reading Secrets in its credentials namespace alone.
 */
function withTheChartsRbac(layout: "namespaced" | "platform") {
  describe(`the operator with only the chart's RBAC (${layout === "namespaced" ? "namespaced Connections" : "ClusterConnections only"})`, () => {
    let system: TestNamespace;
    let credentials: TestNamespace | undefined;
    let ns: TestNamespace;
    let operator: OperatorProcess;
    let release: string;
    let account: string;

    before(async () => {
      system = await createTestNamespace("lgjit-rbac");
      ns = await createTestNamespace("rbac-runs");
      if (layout === "platform") credentials = await createTestNamespace("rbac-credentials");
      const platform = credentials
        ? {
            sets: [
              "--set",
              `connections.namespaced=false,credentials.namespace=${credentials.name}`,
            ],
            args: ["--namespaced-connections=false", `--credentials-namespace=${credentials.name}`],
          }
        : { sets: [], args: [] };
      // The operator harness names the webhooks langgraph-jit-<namespace>: so does this release.
      release = `langgraph-jit-${system.name}`;
      account = `system:serviceaccount:${system.name}:${release}`;
      const rendered = sh(join(clusterDir, "bin", "helm"), [
        "template",
        release,
        join(repoRoot, "charts", "langgraph-jit"),
        "--namespace",
        system.name,
        "--kube-version",
        "1.34.4",
        ...platform.sets,
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
      ]);
      kubectl(["apply", "-f", "-"], rendered);
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
      operator = await startOperator(system.name, platform.args, kubeconfig);
      await setUpBearerApiNamespace(ns.name, "rbac-only", {
        ...(credentials ? { credentialsNamespace: credentials.name } : {}),
      });
    });

    after(async () => {
      await ns?.remove();
      await operator?.remove();
      if (credentials) await deleteClusterConnection("kb-api");
      await credentials?.remove();
      const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
      const ignore = () => undefined;
      await rbac.deleteClusterRole({ name: release }).catch(ignore);
      await rbac.deleteClusterRoleBinding({ name: release }).catch(ignore);
      await rbac.deleteClusterRoleBinding({ name: `${release}-auth-delegator` }).catch(ignore);
      await rbac.deleteClusterRole({ name: `${release}-session-reader` }).catch(ignore);
      await rbac.deleteClusterRole({ name: `${release}-approver` }).catch(ignore);
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

    if (layout === "platform") {
      it("refuses a namespaced Connection's credential, whose Secret it may not read", async () => {
        await createObject("admin", ns.name, "connections", {
          apiVersion: "langgraph-jit.dev/v1alpha1",
          kind: "Connection",
          metadata: { name: "own-api" },
          spec: {
            http: {
              url: "https://own-api.example.invalid",
              auth: { bearer: { secretRef: { name: "own-token", key: "token" } } },
            },
          },
        });
        await customObjects().patchNamespacedCustomObject(
          {
            group: "langgraph-jit.dev",
            version: "v1alpha1",
            namespace: ns.name,
            plural: "accesspolicies",
            name: "ml-platform",
            body: { spec: { grants: [{ connection: "own-api", actions: ["read"] }] } },
          },
          patchAs.merge,
        );
        const own = [{ connection: "own-api", actions: ["read" as const] }];
        await createRun("alice", ns.name, runManifest("own", { access: own }));
        await waitForPhase(ns.name, "own", "Running");
        const api = new CredentialApiClient(operator);
        try {
          const answer = await api.issue(await podToken(await podOfRun(ns.name, "own")));
          assert.equal(answer.status, 424, JSON.stringify(answer.body));
          assert.match(
            JSON.stringify(answer.body),
            /connection \\"own-api\\": is a namespaced Connection, whose Secret .*\/own-token this operator does not read \(namespaced connections are off\): make it a ClusterConnection/,
          );
        } finally {
          await api.close();
        }
      });

      it("reads Secrets in its own and the credentials namespace, and in no team's", () => {
        const may = (namespace: string) =>
          kubectl(
            ["auth", "can-i", "get", "secrets", "-n", namespace, "--as", account],
            undefined,
            [0, 1],
          ).trim();
        assert.equal(may(ns.name), "no");
        assert.equal(may(credentials?.name ?? ""), "yes");
        assert.equal(may(system.name), "yes");
      });
    }
  });
}

withTheChartsRbac("namespaced");
withTheChartsRbac("platform");
