import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AccessPolicy, Requester } from "../../../api/v1alpha1.ts";
import { clusterConnection, httpConnection, postgresConnection } from "../testing/connections.ts";
import { type AccessRequest, evaluateAccess } from "./evaluate-access.ts";

const alice: Requester = { username: "alice@example.com", groups: ["ml-platform"] };
const mallory: Requester = { username: "mallory@example.com", groups: [] };

const postgres = postgresConnection();
const api = httpConnection();

function policy(name: string, spec: Partial<AccessPolicy["spec"]>): AccessPolicy {
  return {
    metadata: { name, namespace: "agents" },
    spec: {
      subjects: [{ kind: "Group", name: "ml-platform" }],
      maxDuration: "1h",
      grants: [{ connection: "kb-postgres", actions: ["read", "write"] }],
      ...spec,
    },
  };
}

function request(overrides: Partial<AccessRequest>): AccessRequest {
  return {
    namespace: "agents",
    requester: alice,
    access: [{ connection: "kb-postgres", actions: ["read"] }],
    maxDurationMs: 30 * 60_000,
    policies: [policy("ml-platform", {})],
    connections: [postgres, api],
    ...overrides,
  };
}

describe("evaluateAccess", () => {
  it("allows access granted to one of the requester's groups", () => {
    const decision = evaluateAccess(request({}));
    assert.equal(decision.allowed, true);
    assert.ok(decision.allowed);
    assert.equal(decision.grants[0]?.policy, "ml-platform");
    assert.deepEqual(decision.grants[0]?.actions, ["read"]);
  });

  it("allows access granted to the requester by user name", () => {
    const byName = policy("alice", { subjects: [{ kind: "User", name: "alice@example.com" }] });
    const decision = evaluateAccess(
      request({ requester: { username: "alice@example.com" }, policies: [byName] }),
    );
    assert.equal(decision.allowed, true);
  });

  it("denies a requester no policy names, naming the connection and the action", () => {
    const decision = evaluateAccess(request({ requester: mallory }));
    assert.deepEqual(decision, {
      allowed: false,
      reason: "NotGranted",
      message: `no AccessPolicy in namespace "agents" grants "read" on connection "kb-postgres" to mallory@example.com`,
    });
  });

  it("denies an action the policy does not grant, naming only the missing one", () => {
    const decision = evaluateAccess(
      request({ access: [{ connection: "kb-postgres", actions: ["read", "ddl"] }] }),
    );
    assert.equal(decision.allowed, false);
    assert.ok(!decision.allowed);
    assert.match(decision.message, /grants "ddl" on connection "kb-postgres"/);
  });

  it("requires one grant to cover every action asked for on a connection", () => {
    const policies = [
      policy("reads", { grants: [{ connection: "kb-postgres", actions: ["read"] }] }),
      policy("writes", { grants: [{ connection: "kb-postgres", actions: ["write"] }] }),
    ];
    const decision = evaluateAccess(
      request({ policies, access: [{ connection: "kb-postgres", actions: ["read", "write"] }] }),
    );
    assert.ok(!decision.allowed);
    assert.equal(decision.reason, "NotGranted");
    assert.match(
      decision.message,
      /no single AccessPolicy grant .* allows "read" and "write" together/,
    );
  });

  it("denies a connection that does not exist", () => {
    const decision = evaluateAccess(request({ connections: [api] }));
    assert.ok(!decision.allowed);
    assert.equal(decision.reason, "ConnectionNotFound");
    assert.match(
      decision.message,
      /connection "kb-postgres" is neither a Connection in namespace "agents" nor a ClusterConnection offered to it/,
    );
  });

  it("denies a name both the namespace and the platform use, saying which to rename", () => {
    const decision = evaluateAccess(
      request({ connections: [api], ambiguous: new Set(["kb-postgres"]) }),
    );
    assert.ok(!decision.allowed);
    assert.equal(decision.reason, "ConnectionAmbiguous");
    assert.match(
      decision.message,
      /names both a Connection in namespace "agents" and a ClusterConnection/,
    );
  });

  it("grants a ClusterConnection the namespace is offered as it would a Connection", () => {
    const platform = clusterConnection(postgres, {});
    const decision = evaluateAccess(request({ connections: [platform, api] }));
    assert.ok(decision.allowed);
    assert.equal(decision.grants[0]?.connection, platform);
  });

  it("denies postgres-only actions on an http connection", () => {
    const policies = [policy("api", { grants: [{ connection: "kb-api", actions: ["read"] }] })];
    const decision = evaluateAccess(
      request({ policies, access: [{ connection: "kb-api", actions: ["ddl"] }] }),
    );
    assert.ok(!decision.allowed);
    assert.equal(decision.reason, "InvalidAction");
  });

  it("denies a maxDuration longer than the policy's", () => {
    const decision = evaluateAccess(request({ maxDurationMs: 2 * 3_600_000 }));
    assert.deepEqual(decision, {
      allowed: false,
      reason: "DurationExceeded",
      message: `maxDuration 2h exceeds the 1h that AccessPolicy allows for connection "kb-postgres"`,
    });
  });

  it("uses a longer-lived policy when the first one's duration is too short", () => {
    const policies = [
      policy("a-short", { maxDuration: "10m" }),
      policy("b-long", { maxDuration: "4h" }),
    ];
    const decision = evaluateAccess(request({ policies, maxDurationMs: 3_600_000 }));
    assert.ok(decision.allowed);
    assert.equal(decision.grants[0]?.policy, "b-long");
  });

  it("matches a ServiceAccount subject only when the requester is that account", () => {
    const nightly = policy("nightly", {
      subjects: [{ kind: "ServiceAccount", name: "nightly" }],
    });
    const asAccount = evaluateAccess(
      request({
        requester: { username: "system:serviceaccount:agents:nightly" },
        policies: [nightly],
      }),
    );
    assert.equal(asAccount.allowed, true);
    const otherNamespace = evaluateAccess(
      request({
        requester: { username: "system:serviceaccount:other:nightly" },
        policies: [nightly],
      }),
    );
    assert.equal(otherNamespace.allowed, false);
  });

  it("requires every connection of the run to be granted", () => {
    const decision = evaluateAccess(
      request({
        access: [
          { connection: "kb-postgres", actions: ["read"] },
          { connection: "kb-api", actions: ["read"] },
        ],
      }),
    );
    assert.ok(!decision.allowed);
    assert.match(decision.message, /on connection "kb-api"/);
  });

  it("collects each granting policy's run approval, with its threshold and timeout", () => {
    const gated = policy("gated", {
      runApproval: {
        approvers: [{ kind: "Group", name: "security" }],
        approvals: 2,
        timeout: "2h",
      },
    });
    const decision = evaluateAccess(request({ policies: [gated] }));
    assert.ok(decision.allowed);
    assert.deepEqual(decision.runApprovals, [
      {
        policy: "gated",
        approvers: [{ kind: "Group", name: "security" }],
        approvals: 2,
        timeoutMs: 2 * 3_600_000,
      },
    ]);
    const byDefault = evaluateAccess(
      request({
        policies: [
          policy("gated", {
            runApproval: {
              approvers: [{ kind: "User", name: "bob" }],
              approvals: 1,
              timeout: "1h",
            },
          }),
        ],
      }),
    );
    assert.ok(byDefault.allowed);
    assert.equal(byDefault.runApprovals[0]?.approvals, 1);
    assert.equal(byDefault.runApprovals[0]?.timeoutMs, 3_600_000);
  });

  it("runs the pod as the ServiceAccount the granting policies name, by default langgraph-jit-run", () => {
    const byDefault = evaluateAccess(request({}));
    assert.ok(byDefault.allowed);
    assert.equal(byDefault.serviceAccount, "langgraph-jit-run");
    const named = evaluateAccess(
      request({ policies: [policy("ml-platform", { runServiceAccountName: "kb-graphs" })] }),
    );
    assert.ok(named.allowed);
    assert.equal(named.serviceAccount, "kb-graphs");
  });

  it("denies a run whose grants come from policies naming different ServiceAccounts", () => {
    const decision = evaluateAccess(
      request({
        access: [
          { connection: "kb-postgres", actions: ["read"] },
          { connection: "kb-api", actions: ["read"] },
        ],
        policies: [
          policy("db", { runServiceAccountName: "kb-graphs" }),
          policy("api", { grants: [{ connection: "kb-api", actions: ["read"] }] }),
        ],
      }),
    );
    assert.deepEqual(decision, {
      allowed: false,
      reason: "ServiceAccountConflict",
      message:
        "the run's grants come from AccessPolicies that run pods as different ServiceAccounts: kb-graphs (AccessPolicy db), langgraph-jit-run (AccessPolicy api)",
    });
  });
});
