// A held command's status and the run's Events, against an in-memory cluster: Pending until
// enough of the grant's approvers approve, one Deny, the timeout, the run's end or the grant's
// withdrawal decide it; each change is written once and said once; a decided command stays so.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type AccessPolicy,
  annotations,
  type Grant,
  type HeldCommand,
  type HeldCommandStatus,
  type LangGraphRunStatus,
  type Requester,
} from "../../../api/v1alpha1.ts";
import { StatusSeal } from "../runs/status-seal.ts";
import { httpConnection } from "../testing/connections.ts";
import { FakeCluster } from "../testing/fake-cluster.ts";
import { alice, testRun } from "../testing/runs.ts";
import { HeldCommandReconciler } from "./held-command-controller.ts";
import type { HeldCommands } from "./held-commands.ts";

const seal = new StatusSeal(Buffer.alloc(32, 5));
const start = Date.parse("2026-12-05T10:00:00Z");
const key = "agents/r-1";
const held = "kb-api: POST /v1/docs (HeldCommand r-1)";
const securityGroup = [{ kind: "Group" as const, name: "security" }];
const waitingForOne = "waiting for 1 more of Group security (AccessPolicy kb)";
const bob: Requester = { username: "bob@example.com", uid: "b-1", groups: ["security"] };
const carol: Requester = { username: "carol@example.com", uid: "c-1", groups: ["security"] };

function policy(approval: Grant["approval"]): AccessPolicy {
  return {
    metadata: { name: "kb", namespace: "agents" },
    spec: {
      subjects: [{ kind: "Group", name: "ml-platform" }],
      maxDuration: "1h",
      grants: [
        { connection: "kb-api", actions: ["read", "write"], ...(approval ? { approval } : {}) },
      ],
    },
  };
}

/** Alice's running run r holding write on kb-api for approval, and its held POST r-1. */
function setup(options: { approvals?: number } = {}) {
  const cluster = new FakeCluster();
  const clock = { now: start };
  cluster.policies.put(
    policy({
      actions: ["write"],
      approvers: securityGroup,
      approvals: options.approvals ?? 1,
      timeout: "10m",
    }),
  );
  cluster.connections.put({
    ...httpConnection(),
    metadata: { name: "kb-api", namespace: "agents" },
  });
  const running: LangGraphRunStatus = {
    phase: "Running",
    startedAt: "2026-12-05T10:00:00Z",
    deadline: "2026-12-05T11:00:00Z",
  };
  const base = testRun({ requester: alice });
  base.spec.access = [{ connection: "kb-api", actions: ["read", "write"] }];
  const run = cluster.runs.put({
    ...base,
    status: { ...running, seal: seal.ofStatus("uid-r", running) },
  });
  const command: HeldCommand = {
    apiVersion: "langgraph-jit.dev/v1alpha1",
    kind: "HeldCommand",
    metadata: {
      name: "r-1",
      namespace: "agents",
      creationTimestamp: new Date(start),
      annotations: { [annotations.runUid]: "uid-r" },
    },
    spec: {
      run: "r",
      connection: "kb-api",
      action: "write",
      summary: "POST /v1/docs",
      http: { method: "POST", path: "/v1/docs" },
      body: { sha256: "ab".repeat(32), bytes: 2 },
    },
  };
  cluster.heldCommands.put(command);
  const writes: HeldCommandStatus[] = [];
  const store: HeldCommands = {
    create: async () => assert.fail("the reconciler creates no held command"),
    read: async (namespace, name) => cluster.heldCommands.get(namespace, name),
    writeStatus: async (written, status) => {
      writes.push(structuredClone(status));
      cluster.heldCommands.put({ ...written, status });
    },
  };
  const reconciler = new HeldCommandReconciler({
    cache: cluster,
    store,
    events: cluster.eventSink,
    notifier: cluster.notifier,
    seal,
    now: () => clock.now,
  });
  let approvalSeq = 0;
  const decide = (
    approver: Requester,
    decision: "Approve" | "Deny",
    reason: string,
    options: { command?: string; runUid?: string } = {},
  ) =>
    cluster.approvals.put({
      metadata: {
        name: `a-${++approvalSeq}`,
        namespace: "agents",
        creationTimestamp: new Date(clock.now),
        annotations: {
          [annotations.approver]: JSON.stringify(approver),
          [annotations.runUid]: options.runUid ?? "uid-r",
        },
      },
      spec: { run: "r", command: options.command ?? "r-1", decision, reason },
    });
  return {
    cluster,
    clock,
    run,
    writes,
    decide,
    reconcile: (at = key) => reconciler.reconcile(at),
    status: () => cluster.heldCommands.get("agents", "r-1")?.status,
    /** The events after the CommandHeld one the first reconcile records. */
    laterEvents: () => cluster.events.slice(1),
  };
}

/** What the policy's webhook was told: to which policies, and which state. */
const told = (cluster: FakeCluster) =>
  cluster.notices.map(({ policies, notice }) => `${policies.join(",")}: ${notice.state}`);

const onRun = (type: "Normal" | "Warning", reason: string, note: string) => ({
  kind: "LangGraphRun",
  name: "r",
  type,
  reason,
  note,
});

describe("HeldCommandReconciler", () => {
  it("holds a new command Pending until the grant's timeout, says so once, and requeues at the expiry", async () => {
    const h = setup();
    h.clock.now = start + 30_000;
    const result = await h.reconcile();
    const pending: HeldCommandStatus = {
      phase: "Pending",
      message: waitingForOne,
      expiresAt: "2026-12-05T10:10:00Z",
      policy: "kb",
      approvers: securityGroup,
      approvals: 1,
      decisions: [],
    };
    assert.deepEqual(h.writes, [pending]);
    assert.deepEqual(h.status(), pending);
    assert.deepEqual(h.cluster.events, [
      onRun("Normal", "CommandHeld", `held for approval: ${held}`),
    ]);
    assert.deepEqual(result, { requeueAfterMs: 10 * 60_000 - 30_000 + 10 });
    assert.deepEqual(h.cluster.notices, [
      {
        policies: ["kb"],
        notice: {
          state: "Waiting",
          namespace: "agents",
          kind: "HeldCommand",
          name: "r-1",
          run: "r",
          requester: "alice@example.com",
          request: `kb-api (write): ${h.cluster.heldCommands.get("agents", "r-1")?.spec.summary}`,
          message: waitingForOne,
        },
      },
    ]);
  });

  it("writes nothing and records nothing when reconciled again with nothing changed", async () => {
    const h = setup();
    await h.reconcile();
    h.clock.now = start + 5 * 60_000;
    const result = await h.reconcile();
    assert.equal(h.writes.length, 1);
    assert.equal(h.cluster.events.length, 1);
    assert.deepEqual(result, { requeueAfterMs: 5 * 60_000 + 10 });
  });

  it("approves on one of the grant's approvers, naming who and why, and stops requeueing", async () => {
    const h = setup();
    await h.reconcile();
    h.clock.now = start + 60_000;
    h.decide(bob, "Approve", "the doc is fine");
    assert.equal(await h.reconcile(), undefined);
    const message = "approved by bob@example.com (the doc is fine)";
    assert.deepEqual(h.status(), {
      phase: "Approved",
      message,
      expiresAt: "2026-12-05T10:10:00Z",
      policy: "kb",
      approvers: securityGroup,
      approvals: 1,
      decisions: [
        {
          approval: "a-1",
          approver: "bob@example.com",
          decision: "Approve",
          reason: "the doc is fine",
          at: "2026-12-05T10:01:00Z",
        },
      ],
    });
    assert.deepEqual(h.laterEvents(), [onRun("Normal", "CommandApproved", `${held} ${message}`)]);
    assert.deepEqual(told(h.cluster), ["kb: Waiting", "kb: Approved"]);
  });

  it("with approvals: 2, stays Pending on one approver (twice) and approves on a second", async () => {
    const h = setup({ approvals: 2 });
    await h.reconcile();
    assert.equal(h.status()?.message, "waiting for 2 more of Group security (AccessPolicy kb)");
    h.decide(bob, "Approve", "first look");
    h.decide(bob, "Approve", "second look");
    await h.reconcile();
    assert.equal(h.status()?.phase, "Pending");
    assert.equal(h.status()?.message, waitingForOne);
    assert.deepEqual(
      h.status()?.decisions?.map((d) => `${d.approver} ${d.decision} ${d.reason}`),
      ["bob@example.com Approve first look"],
    );
    assert.deepEqual(h.laterEvents(), [], "the phase did not change, so no Event");

    h.decide(carol, "Approve", "agreed");
    assert.equal(await h.reconcile(), undefined);
    assert.equal(h.status()?.phase, "Approved");
    const message = "approved by bob@example.com (first look), carol@example.com (agreed)";
    assert.equal(h.status()?.message, message);
    assert.equal(h.writes.length, 3);
    assert.deepEqual(h.laterEvents(), [onRun("Normal", "CommandApproved", `${held} ${message}`)]);
  });

  it("denies on one approver's Deny, as a Warning", async () => {
    const h = setup();
    await h.reconcile();
    h.decide(carol, "Deny", "not today");
    assert.equal(await h.reconcile(), undefined);
    assert.equal(h.status()?.phase, "Denied");
    assert.equal(h.status()?.message, "denied by carol@example.com: not today");
    assert.deepEqual(
      h.status()?.decisions?.map((d) => d.decision),
      ["Deny"],
    );
    assert.deepEqual(h.laterEvents(), [
      onRun("Warning", "CommandDenied", `${held}: denied by carol@example.com: not today`),
    ]);
    assert.deepEqual(told(h.cluster), ["kb: Waiting", "kb: Denied"]);
  });

  it("expires once the grant's timeout passes with nobody deciding", async () => {
    const h = setup();
    h.clock.now = start + 10 * 60_000 - 1;
    await h.reconcile();
    assert.equal(h.status()?.phase, "Pending");
    h.clock.now = start + 10 * 60_000;
    assert.equal(await h.reconcile(), undefined);
    assert.equal(h.status()?.phase, "Expired");
    assert.equal(h.status()?.message, "nobody approved the command in time");
    assert.deepEqual(h.laterEvents(), [
      onRun("Warning", "CommandExpired", `${held}: nobody approved the command in time`),
    ]);
    assert.deepEqual(told(h.cluster), ["kb: Waiting", "kb: Expired"]);
  });

  it("denies when the run is gone, with no run to record an Event on", async () => {
    const h = setup();
    await h.reconcile();
    h.cluster.runs.remove(h.run);
    assert.equal(await h.reconcile(), undefined);
    assert.equal(h.status()?.phase, "Denied");
    assert.equal(h.status()?.message, "the run is gone");
    assert.equal(h.writes.length, 2);
    assert.deepEqual(h.laterEvents(), []);
    assert.deepEqual(
      told(h.cluster),
      ["kb: Waiting", "kb: Denied"],
      "the policy that held it is told, though its grant is no longer found",
    );
  });

  it("denies when a run of another uid took the name", async () => {
    const h = setup();
    await h.reconcile();
    h.cluster.runs.put({ ...h.run, metadata: { ...h.run.metadata, uid: "uid-r2" } });
    assert.equal(await h.reconcile(), undefined);
    assert.equal(h.status()?.phase, "Denied");
    assert.equal(h.status()?.message, "the run is gone");
    assert.deepEqual(h.laterEvents(), [], "nothing is said on the run that took the name");
    assert.equal(h.cluster.notices[1]?.notice.requester, "", "nor in its requester's name");
  });

  it("denies once the run no longer holds its credential", async () => {
    const h = setup();
    await h.reconcile();
    h.cluster.runs.put({
      ...h.run,
      status: { ...h.run.status, credential: { revokedAt: "2026-12-05T10:05:00Z" } },
    });
    assert.equal(await h.reconcile(), undefined);
    const message =
      "the run no longer holds its credential: LangGraphRun agents/r has ended and its credentials are revoked";
    assert.equal(h.status()?.phase, "Denied");
    assert.equal(h.status()?.message, message);
    assert.deepEqual(h.laterEvents(), [onRun("Warning", "CommandDenied", `${held}: ${message}`)]);
  });

  it("denies once the policy no longer holds the action for approval", async () => {
    const h = setup();
    await h.reconcile();
    h.cluster.policies.put(policy(undefined));
    assert.equal(await h.reconcile(), undefined);
    const message = `the run's grant no longer holds "write" on connection "kb-api" for approval`;
    assert.equal(h.status()?.phase, "Denied");
    assert.equal(h.status()?.message, message);
    assert.deepEqual(h.laterEvents(), [onRun("Warning", "CommandDenied", `${held}: ${message}`)]);
  });

  it("never rewrites a decided command: Approved stays so after the run ends", async () => {
    const h = setup();
    await h.reconcile();
    h.decide(bob, "Approve", "fine");
    await h.reconcile();
    const approved = h.status();
    assert.equal(approved?.phase, "Approved");
    h.cluster.runs.put({
      ...h.run,
      status: { ...h.run.status, credential: { revokedAt: "2026-12-05T10:05:00Z" } },
    });
    assert.equal(await h.reconcile(), undefined);
    assert.equal(h.writes.length, 2);
    assert.deepEqual(h.status(), approved);
    assert.deepEqual(
      h.laterEvents().map((e) => e.reason),
      ["CommandApproved"],
    );
  });

  it("never rewrites a decided command: Expired stays so when an approval comes late", async () => {
    const h = setup();
    h.clock.now = start + 10 * 60_000;
    await h.reconcile();
    assert.equal(h.status()?.phase, "Expired");
    h.decide(bob, "Approve", "sorry, late");
    assert.equal(await h.reconcile(), undefined);
    assert.equal(h.writes.length, 1);
    assert.equal(h.status()?.phase, "Expired");
    assert.deepEqual(
      h.cluster.events.map((e) => e.reason),
      ["CommandExpired"],
    );
  });

  it("counts neither the requester's own Approval nor one naming another command or run", async () => {
    const h = setup();
    await h.reconcile();
    h.decide(alice, "Approve", "my own");
    h.decide(bob, "Approve", "the other one", { command: "r-2" });
    h.decide(carol, "Approve", "a run of old", { runUid: "uid-old" });
    await h.reconcile();
    assert.equal(h.writes.length, 1, "nothing counted, so nothing to write");
    assert.equal(h.status()?.phase, "Pending");
    assert.deepEqual(h.status()?.decisions, []);
    assert.deepEqual(h.laterEvents(), []);
  });

  it("does nothing for a held command the cache does not hold", async () => {
    const h = setup();
    assert.equal(await h.reconcile("agents/r-9"), undefined);
    assert.equal(await h.reconcile("other/r-1"), undefined);
    assert.deepEqual(h.writes, []);
    assert.deepEqual(h.cluster.events, []);
  });
});
