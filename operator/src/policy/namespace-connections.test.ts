import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClusterConnection, Connection } from "../../../api/v1alpha1.ts";
import { clusterConnection, httpConnection, postgresConnection } from "../testing/connections.ts";
import { FakeCluster } from "../testing/fake-cluster.ts";
import {
  connectionIn,
  connectionsToRevoke,
  isClusterConnection,
  namespaceConnections,
  secretNamespaceOf,
  selectorMatches,
  tokenRecordKey,
} from "./namespace-connections.ts";

const inNamespace = (connection: Connection, namespace: string): Connection => ({
  ...connection,
  metadata: { ...connection.metadata, namespace },
});
const agents = { "kubernetes.io/metadata.name": "agents", team: "ml" };

describe("selectorMatches", () => {
  it("reads a label selector as Kubernetes does", () => {
    const cases: [ClusterConnection["spec"]["namespaceSelector"], boolean][] = [
      [{}, true],
      [{ matchLabels: { team: "ml" } }, true],
      [{ matchLabels: { team: "ops" } }, false],
      [{ matchExpressions: [{ key: "team", operator: "In", values: ["ml", "ops"] }] }, true],
      [{ matchExpressions: [{ key: "tier", operator: "In", values: ["a"] }] }, false],
      [{ matchExpressions: [{ key: "team", operator: "NotIn", values: ["ml"] }] }, false],
      [{ matchExpressions: [{ key: "tier", operator: "NotIn", values: ["a"] }] }, true],
      [{ matchExpressions: [{ key: "team", operator: "Exists" }] }, true],
      [{ matchExpressions: [{ key: "team", operator: "DoesNotExist" }] }, false],
      [
        { matchLabels: { team: "ml" }, matchExpressions: [{ key: "x", operator: "Exists" }] },
        false,
      ],
      [{ matchExpressions: [{ key: "team", operator: "Gt" as "In", values: ["1"] }] }, false],
    ];
    for (const [selector, expected] of cases)
      assert.equal(selectorMatches(selector, agents), expected, JSON.stringify(selector));
  });
});

describe("namespaceConnections", () => {
  const platformDb = clusterConnection(postgresConnection("platform-db"), {
    matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["agents"] }],
  });
  const everywhereApi = clusterConnection(httpConnection("search-api"), {});

  it("offers a namespace its own Connections and the ClusterConnections that select it", () => {
    const own = [
      inNamespace(httpConnection("kb-api"), "agents"),
      inNamespace(httpConnection("x"), "other"),
    ];
    const { connections, ambiguous } = namespaceConnections("agents", agents, own, [
      platformDb,
      everywhereApi,
    ]);
    assert.deepEqual(
      connections.map((c) => c.metadata?.name),
      ["kb-api", "platform-db", "search-api"],
    );
    assert.equal(ambiguous.size, 0);
  });

  it("offers no ClusterConnection a namespace its selector leaves out, or one not known yet", () => {
    const team = { "kubernetes.io/metadata.name": "team-b" };
    assert.deepEqual(
      namespaceConnections("team-b", team, [], [platformDb, everywhereApi]).connections.map(
        (c) => c.metadata?.name,
      ),
      ["search-api"],
    );
    assert.deepEqual(
      namespaceConnections("team-b", undefined, [], [platformDb, everywhereApi]).connections,
      [],
    );
  });

  it("names neither when a Connection of the namespace and an offered ClusterConnection share a name", () => {
    const shadow = inNamespace(
      postgresConnection("platform-db", { host: "team.db.svc" }),
      "agents",
    );
    const { connections, ambiguous } = namespaceConnections(
      "agents",
      agents,
      [shadow],
      [platformDb],
    );
    assert.deepEqual(connections, []);
    assert.deepEqual([...ambiguous], ["platform-db"]);
  });
});

describe("tokenRecordKey", () => {
  it("records a ClusterConnection's tokens apart from a same-named Connection's", () => {
    const platform = clusterConnection(postgresConnection("kb-api"), {});
    const team = inNamespace(postgresConnection("kb-api"), "agents");
    assert.equal(tokenRecordKey(team), "kb-api", "as before ClusterConnections existed");
    assert.equal(tokenRecordKey(platform), "ClusterConnection.kb-api");
    assert.match(tokenRecordKey(platform), /^[-._a-zA-Z0-9]+$/, "a valid Secret data key part");
  });
});

describe("secretNamespaceOf", () => {
  it("reads a ClusterConnection's Secrets in the credentials namespace, a Connection's in its own", () => {
    const clusterOne = clusterConnection(postgresConnection(), {});
    assert.equal(isClusterConnection(clusterOne), true);
    assert.equal(secretNamespaceOf(clusterOne, "langgraph-jit"), "langgraph-jit");
    const own = inNamespace(postgresConnection(), "agents");
    assert.equal(isClusterConnection(own), false);
    assert.equal(secretNamespaceOf(own, "langgraph-jit"), "agents");
  });
});

describe("connectionsIn", () => {
  const cluster = () => {
    const caches = new FakeCluster();
    caches.namespaces.put({ metadata: { name: "agents", labels: agents } });
    caches.clusterConnections.put(
      clusterConnection(postgresConnection("kb-postgres"), { matchLabels: { team: "ml" } }),
    );
    return caches;
  };

  it("reads the namespace's labels from the cache, at every call", () => {
    const caches = cluster();
    assert.equal(connectionIn(caches, "agents", "kb-postgres")?.kind, "ClusterConnection");
    caches.namespaces.put({ metadata: { name: "agents", labels: { team: "ops" } } });
    assert.equal(connectionIn(caches, "agents", "kb-postgres"), undefined);
    assert.equal(connectionIn(caches, "unknown", "kb-postgres"), undefined);
  });

  it("revokes through what a name means now, else through every connection it may have meant", () => {
    const caches = cluster();
    const own = caches.connections.put(inNamespace(postgresConnection("kb-postgres"), "other"));
    assert.deepEqual(
      connectionsToRevoke(caches, "other", "kb-postgres"),
      [own],
      "a ClusterConnection never offered to the namespace is not touched",
    );
    caches.namespaces.put({ metadata: { name: "agents", labels: {} } });
    assert.deepEqual(
      connectionsToRevoke(caches, "agents", "kb-postgres").map((c) => c.kind),
      ["ClusterConnection"],
      "the selector no longer offers it: what it was issued through is revoked all the same",
    );
    caches.namespaces.put({ metadata: { name: "agents", labels: agents } });
    caches.connections.put(inNamespace(postgresConnection("kb-postgres"), "agents"));
    assert.equal(connectionsToRevoke(caches, "agents", "kb-postgres").length, 2, "ambiguous now");
    assert.deepEqual(connectionsToRevoke(caches, "agents", "unknown"), []);
  });
});
