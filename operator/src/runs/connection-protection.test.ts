// A Connection keeps its finalizer exactly while a started run may hold an unrevoked credential
// through it, so deleting it cannot strand a live role or token.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Connection, connectionFinalizer } from "../../../api/v1alpha1.ts";
import { clusterConnection, postgresConnection } from "../testing/connections.ts";
import { FakeCluster } from "../testing/fake-cluster.ts";
import { alice, testRun } from "../testing/runs.ts";
import { ConnectionProtection } from "./connection-protection.ts";

const key = "agents/kb-postgres";

function setup() {
  const cluster = new FakeCluster();
  const connection: Connection = {
    ...postgresConnection(),
    metadata: { name: "kb-postgres", namespace: "agents" },
  };
  cluster.connections.put(connection);
  const protection = new ConnectionProtection({ ...cluster, finalizers: cluster.finalizers });
  const finalizers = () => cluster.connections.get("agents", "kb-postgres")?.metadata?.finalizers;
  return { cluster, protection, finalizers };
}

describe("ConnectionProtection", () => {
  it("holds a Connection while a started run's credential through it is unrevoked", async () => {
    const { cluster, protection, finalizers } = setup();
    const pending = testRun({ requester: alice });
    cluster.runs.put(pending);
    await protection.reconcile(key);
    assert.equal(finalizers(), undefined, "a run that never started holds nothing");

    const started = cluster.runs.put({
      ...pending,
      status: { phase: "Running", startedAt: "2026-12-05T10:00:00Z" },
    });
    await protection.reconcile(key);
    assert.deepEqual(finalizers(), [connectionFinalizer]);
    await protection.reconcile(key);
    assert.deepEqual(finalizers(), [connectionFinalizer], "added once");

    cluster.runs.put({
      ...started,
      status: {
        ...started.status,
        phase: "Succeeded",
        credential: { revokedAt: "2026-12-05T10:05:00Z" },
      },
    });
    await protection.reconcile(key);
    assert.deepEqual(finalizers(), []);
  });

  it("adds nothing to a Connection already being deleted, and lets it go once unused", async () => {
    const { cluster } = setup();
    const connection = cluster.connections.get("agents", "kb-postgres");
    assert.ok(connection);
    cluster.delete(cluster.connections, connection);
    assert.equal(cluster.connections.get("agents", "kb-postgres"), undefined);

    const held = setup();
    const run = held.cluster.runs.put({
      ...testRun({ requester: alice }),
      status: { phase: "Running", startedAt: "2026-12-05T10:00:00Z" },
    });
    await held.protection.reconcile(key);
    const inUse = held.cluster.connections.get("agents", "kb-postgres");
    assert.ok(inUse);
    held.cluster.delete(held.cluster.connections, inUse);
    await held.protection.reconcile(key);
    assert.ok(
      held.cluster.connections.get("agents", "kb-postgres"),
      "held while the run may use it",
    );
    held.cluster.runs.put({
      ...run,
      status: { ...run.status, credential: { revokedAt: "2026-12-05T10:05:00Z" } },
    });
    await held.protection.reconcile(key);
    assert.equal(held.cluster.connections.get("agents", "kb-postgres"), undefined, "released");
  });

  it("holds a ClusterConnection while a started run of any namespace names it", async () => {
    const { cluster, protection } = setup();
    cluster.clusterConnections.put(clusterConnection(postgresConnection(), {}));
    const held = () => cluster.clusterConnections.get("", "kb-postgres")?.metadata?.finalizers;
    const run = cluster.runs.put({
      ...testRun({ requester: alice }),
      status: { phase: "Running", startedAt: "2026-12-05T10:00:00Z" },
    });
    await protection.reconcile("kb-postgres");
    assert.deepEqual(held(), [connectionFinalizer]);
    cluster.runs.put({
      ...run,
      status: { ...run.status, credential: { revokedAt: "2026-12-05T10:05:00Z" } },
    });
    await protection.reconcile("kb-postgres");
    assert.deepEqual(held(), []);
  });
});
