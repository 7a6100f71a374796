import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClusterConnection, Connection } from "../../../api/v1alpha1.ts";
import { httpConnection, postgresConnection } from "../testing/connections.ts";
import {
  isClusterConnection,
  namespaceConnections,
  secretNamespaceOf,
  selectorMatches,
} from "./namespace-connections.ts";

const inNamespace = (connection: Connection, namespace: string): Connection => ({
  ...connection,
  metadata: { ...connection.metadata, namespace },
});
const offered = (
  connection: Connection,
  namespaceSelector: ClusterConnection["spec"]["namespaceSelector"],
): ClusterConnection => ({
  kind: "ClusterConnection",
  metadata: { name: connection.metadata?.name },
  spec: { ...connection.spec, namespaceSelector },
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
  const platformDb = offered(postgresConnection("platform-db"), {
    matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["agents"] }],
  });
  const everywhereApi = offered(httpConnection("search-api"), {});

  it("offers a namespace its own Connections and the ClusterConnections that select it", () => {
    const own = [
      inNamespace(httpConnection("kb-api"), "agents"),
      inNamespace(httpConnection("x"), "other"),
    ];
    const { usable, ambiguous } = namespaceConnections("agents", agents, own, [
      platformDb,
      everywhereApi,
    ]);
    assert.deepEqual(
      usable.map((c) => c.metadata?.name),
      ["kb-api", "platform-db", "search-api"],
    );
    assert.equal(ambiguous.size, 0);
  });

  it("offers no ClusterConnection a namespace its selector leaves out, or one not known yet", () => {
    const team = { "kubernetes.io/metadata.name": "team-b" };
    assert.deepEqual(
      namespaceConnections("team-b", team, [], [platformDb, everywhereApi]).usable.map(
        (c) => c.metadata?.name,
      ),
      ["search-api"],
    );
    assert.deepEqual(
      namespaceConnections("team-b", undefined, [], [platformDb, everywhereApi]).usable,
      [],
    );
  });

  it("names neither when a Connection of the namespace and an offered ClusterConnection share a name", () => {
    const shadow = inNamespace(
      postgresConnection("platform-db", { host: "team.db.svc" }),
      "agents",
    );
    const { usable, ambiguous } = namespaceConnections("agents", agents, [shadow], [platformDb]);
    assert.deepEqual(usable, []);
    assert.deepEqual([...ambiguous], ["platform-db"]);
  });
});

describe("secretNamespaceOf", () => {
  it("reads a ClusterConnection's Secrets in the credentials namespace, a Connection's in its own", () => {
    const clusterOne = offered(postgresConnection(), {});
    assert.equal(isClusterConnection(clusterOne), true);
    assert.equal(secretNamespaceOf(clusterOne, "langgraph-jit"), "langgraph-jit");
    const own = inNamespace(postgresConnection(), "agents");
    assert.equal(isClusterConnection(own), false);
    assert.equal(secretNamespaceOf(own, "langgraph-jit"), "agents");
  });
});
