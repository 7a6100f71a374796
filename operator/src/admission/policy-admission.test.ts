import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AccessPolicy, ClusterConnection } from "../../../api/v1alpha1.ts";
import type { NamespaceConnections } from "../policy/namespace-connections.ts";
import { clusterConnection, offered, postgresConnection } from "../testing/connections.ts";
import type { AdmissionRequest } from "./admission-review.ts";
import { validatePolicy } from "./policy-admission.ts";

const platformDb = clusterConnection(postgresConnection("platform-db"), {
  matchLabels: { team: "ml" },
});

function review(...connections: string[]): AdmissionRequest<AccessPolicy> {
  return {
    uid: "req-1",
    kind: { group: "langgraph-jit.dev", version: "v1alpha1", kind: "AccessPolicy" },
    resource: { group: "langgraph-jit.dev", version: "v1alpha1", resource: "accesspolicies" },
    namespace: "agents",
    operation: "CREATE",
    userInfo: { username: "alice@example.com" },
    object: {
      metadata: { name: "ml", namespace: "agents" },
      spec: {
        subjects: [{ kind: "Group", name: "ml-platform" }],
        maxDuration: "1h",
        grants: connections.map((connection) => ({ connection, actions: ["read"] })),
      },
    },
  };
}

const deps = (named: NamespaceConnections, platform: ClusterConnection[] = [platformDb]) => ({
  connections: () => named,
  clusterConnection: (name: string) => platform.find((c) => c.metadata?.name === name),
});

describe("an AccessPolicy's admission", () => {
  it("admits grants on the namespace's own connections, offered ones, and names nothing defines yet", () => {
    const answer = validatePolicy(
      review("kb-postgres", "platform-db", "not-yet"),
      deps(offered(postgresConnection(), platformDb)),
    );
    assert.equal(answer.allowed, true);
  });

  it("refuses a grant on a ClusterConnection the namespace is not offered, naming its selector", () => {
    const answer = validatePolicy(
      review("kb-postgres", "platform-db"),
      deps(offered(postgresConnection())),
    );
    assert.equal(answer.allowed, false);
    assert.equal(answer.status?.code, 403);
    assert.equal(
      answer.status?.message,
      `spec.grants[1].connection: ClusterConnection "platform-db" is not offered to namespace "agents": its namespaceSelector {"matchLabels":{"team":"ml"}} does not select the namespace's labels`,
    );
  });

  it("refuses a name both the namespace and the platform define", () => {
    const answer = validatePolicy(
      review("platform-db"),
      deps({ connections: [], ambiguous: new Set(["platform-db"]) }),
    );
    assert.equal(answer.allowed, false);
    assert.match(
      answer.status?.message ?? "",
      /^spec.grants\[0\].connection: "platform-db" names both/,
    );
  });
});
