// A namespaced Connection says when someone other than the operator may read its Secrets:
// each RoleBinding subject of its namespace asked of the authorizer, written only on change.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RbacV1Subject, V1RoleBinding } from "@kubernetes/client-node";
import type { Condition } from "../../../api/condition.ts";
import type { Connection } from "../../../api/v1alpha1.ts";
import type { AuthenticatedUser } from "../kube/access-review.ts";
import { httpConnection, postgresConnection } from "../testing/connections.ts";
import { FakeCluster } from "../testing/fake-cluster.ts";
import { findCondition } from "./conditions.ts";
import { CredentialsExposedReconciler, credentialsExposed } from "./credentials-exposed.ts";

const operator = "system:serviceaccount:langgraph-jit:langgraph-jit";

function binding(name: string, ...subjects: RbacV1Subject[]): V1RoleBinding {
  return {
    metadata: { name, namespace: "agents" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "edit" },
    subjects,
  };
}

/** `readers`: who may get which Secret, as "username-or-group secret". */
function setup(readers: string[], options: { failing?: boolean } = {}) {
  const cluster = new FakeCluster();
  const asked: string[] = [];
  const writes: Condition[][] = [];
  cluster.connections.put({
    ...postgresConnection(),
    metadata: { name: "kb-postgres", namespace: "agents", generation: 1 },
  });
  const reconciler = new CredentialsExposedReconciler({
    connections: cluster.connections,
    roleBindings: cluster.roleBindings,
    userMayGetSecret: async (user: AuthenticatedUser, _namespace, secret) => {
      const who = user.username || (user.groups ?? []).join(",");
      asked.push(`${who} ${secret}`);
      if (options.failing) throw new Error("the authorizer did not answer");
      return readers.includes(`${who} ${secret}`);
    },
    conditions: {
      write: async (connection: Connection, conditions: Condition[]) => {
        writes.push(conditions);
        cluster.connections.put({ ...connection, status: { ...connection.status, conditions } });
      },
    },
    events: cluster.eventSink,
    operatorUsername: operator,
    now: () => new Date("2026-12-06T10:00:00Z"),
  });
  const condition = () =>
    findCondition(
      cluster.connections.get("agents", "kb-postgres")?.status?.conditions,
      credentialsExposed,
    );
  return { cluster, reconciler, asked, writes, condition };
}

describe("CredentialsExposed", () => {
  it("is True when a user, a group or a ServiceAccount bound in the namespace may get a Secret", async () => {
    const cases: [RbacV1Subject, string][] = [
      [
        { kind: "User", name: "oidc:carol@example.com", apiGroup: "rbac.authorization.k8s.io" },
        "oidc:carol@example.com kb-admin",
      ],
      [
        { kind: "Group", name: "oidc:ml-platform", apiGroup: "rbac.authorization.k8s.io" },
        "oidc:ml-platform kb-admin",
      ],
      [
        { kind: "ServiceAccount", name: "ci", namespace: "agents" },
        "system:serviceaccount:agents:ci kb-admin",
      ],
    ];
    for (const [subject, reader] of cases) {
      const h = setup([reader]);
      h.cluster.roleBindings.put(binding("team-edit", subject));
      await h.reconciler.reconcile("agents/kb-postgres");
      assert.equal(h.condition()?.status, "True", reader);
      assert.equal(h.condition()?.reason, "SecretReadable");
      assert.match(
        h.condition()?.message ?? "",
        new RegExp(
          `^${subject.kind} ${subject.name} \\(RoleBinding agents/team-edit\\) may get Secret agents/kb-admin`,
        ),
      );
      assert.deepEqual(
        h.cluster.events.map((e) => `${e.type} ${e.reason}`),
        ["Warning CredentialsExposed"],
      );
    }
  });

  it("is False when no subject may, and never asks about the operator itself", async () => {
    const h = setup([`${operator} kb-admin`]);
    h.cluster.roleBindings.put(
      binding(
        "mixed",
        { kind: "ServiceAccount", name: "langgraph-jit", namespace: "langgraph-jit" },
        { kind: "User", name: "alice@example.com" },
      ),
    );
    await h.reconciler.reconcile("agents/kb-postgres");
    assert.equal(h.condition()?.status, "False");
    assert.equal(h.condition()?.reason, "SecretsUnreadable");
    assert.deepEqual(h.asked, ["alice@example.com kb-admin"]);
    assert.deepEqual(h.cluster.events, []);
  });

  it("asks nothing for a Connection without Secrets", async () => {
    const h = setup([]);
    h.cluster.connections.put({
      ...httpConnection(),
      metadata: { name: "kb-postgres", namespace: "agents" },
    });
    h.cluster.roleBindings.put(binding("b", { kind: "User", name: "alice@example.com" }));
    await h.reconciler.reconcile("agents/kb-postgres");
    assert.deepEqual(h.asked, []);
    assert.equal(h.condition()?.status, "False");
  });

  it("writes only on change and warns once per exposure", async () => {
    const h = setup(["oidc:carol@example.com kb-admin"]);
    h.cluster.roleBindings.put(binding("b", { kind: "User", name: "oidc:carol@example.com" }));
    await h.reconciler.reconcile("agents/kb-postgres");
    await h.reconciler.reconcile("agents/kb-postgres");
    assert.equal(h.writes.length, 1, "an unchanged condition is not written again");
    assert.equal(h.cluster.events.length, 1);
    const binding1 = h.cluster.roleBindings.get("agents", "b");
    assert.ok(binding1);
    h.cluster.roleBindings.remove(binding1);
    await h.reconciler.reconcile("agents/kb-postgres");
    assert.equal(h.condition()?.status, "False");
    assert.equal(h.writes.length, 2);
    assert.equal(h.cluster.events.length, 1, "no Event when it is no longer exposed");
  });

  it("writes nothing when the authorizer cannot answer", async () => {
    const h = setup([], { failing: true });
    h.cluster.roleBindings.put(binding("b", { kind: "User", name: "alice@example.com" }));
    await assert.rejects(h.reconciler.reconcile("agents/kb-postgres"), /did not answer/);
    assert.deepEqual(h.writes, []);
  });
});
