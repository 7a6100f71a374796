// Whose Approval counts is decided at admission from the API server's authentication: the
// approver is stamped, never supplied; the requester cannot approve their own run; only an
// approver the run's policy names may decide, once; and nothing about it changes afterwards.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type AccessPolicy,
  type Approval,
  annotations,
  type LangGraphRun,
} from "../../../api/v1alpha1.ts";
import { StatusSeal } from "../runs/status-seal.ts";
import { offered, postgresConnection } from "../testing/connections.ts";
import { alice, testRun } from "../testing/runs.ts";
import type { AdmissionRequest, UserInfo } from "./admission-review.ts";
import {
  type ApprovalAdmissionDeps,
  mutateApproval,
  validateApproval,
} from "./approval-admission.ts";

const bob: UserInfo = { username: "bob@example.com", uid: "b-1", groups: ["security"] };
const mallory: UserInfo = { username: "mallory@example.com", uid: "m-1", groups: [] };

const policy: AccessPolicy = {
  metadata: { name: "gated", namespace: "agents" },
  spec: {
    subjects: [{ kind: "Group", name: "ml-platform" }],
    maxDuration: "1h",
    grants: [{ connection: "kb-postgres", actions: ["read"] }],
    runApproval: { approvers: [{ kind: "Group", name: "security" }], approvals: 1, timeout: "1h" },
  },
};

function waitingRun(phase: "AwaitingApproval" | "Running" = "AwaitingApproval"): LangGraphRun {
  return { ...testRun({ requester: alice }), status: { phase } };
}

function deps(run = waitingRun(), approvals: Approval[] = []): ApprovalAdmissionDeps {
  return {
    run: (_namespace, name) => (name === run.metadata?.name ? run : undefined),
    heldCommand: () => undefined,
    seal: new StatusSeal(Buffer.alloc(32, 9)),
    approvals: () => approvals,
    policies: () => [policy],
    connections: () =>
      offered({ ...postgresConnection(), metadata: { name: "kb-postgres", namespace: "agents" } }),
  };
}

function approval(annotated: Record<string, string> = {}, run = "r"): Approval {
  return {
    metadata: { name: "r-bob", namespace: "agents", annotations: annotated },
    spec: { run, decision: "Approve", reason: "looked at the diff" },
  };
}

function request(
  userInfo: UserInfo,
  object: Approval,
  operation: "CREATE" | "UPDATE" = "CREATE",
  oldObject?: Approval,
): AdmissionRequest<Approval> {
  return {
    uid: "req-1",
    kind: { group: "langgraph-jit.dev", version: "v1alpha1", kind: "Approval" },
    resource: { group: "langgraph-jit.dev", version: "v1alpha1", resource: "approvals" },
    namespace: "agents",
    operation,
    userInfo,
    object,
    ...(oldObject ? { oldObject } : {}),
  };
}

/** The Approval as the mutating webhook leaves it for this user. */
function stamped(user: UserInfo, run = waitingRun()): Approval {
  return approval({
    [annotations.approver]: JSON.stringify({
      username: user.username,
      uid: user.uid,
      groups: user.groups,
    }),
    [annotations.runUid]: run.metadata?.uid ?? "",
  });
}

describe("approval admission", () => {
  it("stamps the approver from the request's authentication and the run's uid", () => {
    const response = mutateApproval(request(bob, approval()), deps());
    assert.equal(response.allowed, true);
    const patch = JSON.parse(Buffer.from(response.patch ?? "", "base64").toString());
    assert.deepEqual(patch, [
      {
        op: "add",
        path: "/metadata/annotations/langgraph-jit.dev~1approver",
        value: JSON.stringify({ username: bob.username, uid: bob.uid, groups: bob.groups }),
      },
      { op: "add", path: "/metadata/annotations/langgraph-jit.dev~1run-uid", value: "uid-r" },
    ]);
  });

  it("refuses an approver or run uid the request sets itself", () => {
    for (const key of [annotations.approver, annotations.runUid]) {
      const response = mutateApproval(request(mallory, approval({ [key]: "x" })), deps());
      assert.equal(response.allowed, false);
      assert.match(response.status?.message ?? "", /a request may not set it/);
    }
  });

  it("refuses an approval of a run that does not exist", () => {
    const response = mutateApproval(request(bob, approval({}, "nope")), deps());
    assert.equal(response.allowed, false);
    assert.match(response.status?.message ?? "", /LangGraphRun agents\/nope does not exist/);
  });

  it("admits an approver the policy names", () => {
    assert.equal(validateApproval(request(bob, stamped(bob)), deps()).allowed, true);
  });

  it("refuses a stamp that is not the authenticated user's (forged approver)", () => {
    const response = validateApproval(request(mallory, stamped(bob)), deps());
    assert.equal(response.allowed, false);
    assert.match(response.status?.message ?? "", /does not match the authenticated approver/);
  });

  it("refuses the requester approving their own run", () => {
    const aliceInfo: UserInfo = { ...alice, groups: [...(alice.groups ?? []), "security"] };
    const response = validateApproval(request(aliceInfo, stamped(aliceInfo)), deps());
    assert.equal(response.allowed, false);
    assert.match(response.status?.message ?? "", /requested the run and may not decide/);
  });

  it("refuses someone the policy does not name as an approver", () => {
    const response = validateApproval(request(mallory, stamped(mallory)), deps());
    assert.equal(response.allowed, false);
    assert.match(
      response.status?.message ?? "",
      /mallory@example.com is not among the run's approvers: Group security \(AccessPolicy gated\)/,
    );
  });

  it("refuses a decision on a run that is not waiting, or on another run under the name", () => {
    const running = waitingRun("Running");
    const notWaiting = validateApproval(request(bob, stamped(bob, running)), deps(running));
    assert.match(notWaiting.status?.message ?? "", /is not waiting for approval \(phase Running\)/);
    const recreated = { ...waitingRun(), metadata: { ...waitingRun().metadata, uid: "uid-new" } };
    const stale = validateApproval(request(bob, stamped(bob)), deps(recreated));
    assert.equal(stale.allowed, false);
  });

  it("refuses a second decision by the same approver", () => {
    const first = { ...stamped(bob), metadata: { ...stamped(bob).metadata, name: "first" } };
    const response = validateApproval(request(bob, stamped(bob)), deps(waitingRun(), [first]));
    assert.equal(response.allowed, false);
    assert.match(response.status?.message ?? "", /already decided .* \(Approval first: Approve\)/);
  });

  it("refuses any change to the stamps", () => {
    const before = stamped(bob);
    const after = stamped(mallory);
    const response = validateApproval(request(mallory, after, "UPDATE", before), deps());
    assert.equal(response.allowed, false);
    assert.match(response.status?.message ?? "", /is immutable/);
  });
});
