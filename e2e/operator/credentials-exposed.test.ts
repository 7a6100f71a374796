// A namespaced Connection's Secrets sit beside the runs: the operator says on the Connection
// when a RoleBinding of the namespace lets someone but itself read them, as the API server's
// authorizer answers, and stops saying so once that access is gone.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CoreV1Api, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import type { Connection } from "../../api/v1alpha1.ts";
import { eventually, kubeConfigFor, kubectlAs } from "../lib/cluster.ts";
import { useOperator } from "../lib/operator.ts";
import { customObjects } from "../lib/runs.ts";

const admin = kubeConfigFor("admin");

describe("CredentialsExposed on a namespaced Connection", () => {
  const suite = useOperator("exposed", { runs: true });

  async function exposed(status: "True" | "False") {
    return eventually(
      `kb-postgres's CredentialsExposed to be ${status}`,
      async () => {
        const connection = (await customObjects().getNamespacedCustomObject({
          group: "langgraph-jit.dev",
          version: "v1alpha1",
          namespace: suite.ns.name,
          plural: "connections",
          name: "kb-postgres",
        })) as Connection;
        const condition = connection.status?.conditions?.find(
          (c) => c.type === "CredentialsExposed",
        );
        return condition?.status === status ? condition : undefined;
      },
      30_000,
    );
  }

  it("is False while only run authors and approvers are bound, True once an editor is, False again without", async () => {
    const ns = suite.ns.name;
    const quiet = await exposed("False");
    assert.equal(quiet.reason, "SecretsUnreadable");

    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: "carol-edits" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "edit" },
        subjects: [
          { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "oidc:carol@example.com" },
        ],
      },
    });
    const canI = kubectlAs("oidc/carol", ["-n", ns, "auth", "can-i", "get", "secret/kb-admin"]);
    assert.equal(
      canI.stdout.trim(),
      "yes",
      "edit reads the namespace's Secrets: the exposure is real",
    );
    const warned = await exposed("True");
    assert.equal(warned.reason, "SecretReadable");
    assert.match(
      warned.message,
      new RegExp(
        `^User oidc:carol@example.com \\(RoleBinding ${ns}/carol-edits\\) may get Secret ${ns}/kb-admin: hold these credentials in a ClusterConnection`,
      ),
    );
    const events = await admin.makeApiClient(CoreV1Api).listNamespacedEvent({
      namespace: ns,
      fieldSelector: "involvedObject.name=kb-postgres,reason=CredentialsExposed",
    });
    assert.equal(events.items[0]?.type, "Warning");

    await rbac.deleteNamespacedRoleBinding({ namespace: ns, name: "carol-edits" });
    await exposed("False");
  });
});
