// kubectl jit approvals lists what the caller may decide: waiting runs whose policies name them,
// never their own, never one they already decided.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "yaml";
import type { HeldCommand, LangGraphRun } from "../../api/v1alpha1.ts";
import { age, formatWaiting, waitingFor } from "./approvals.ts";

const bob = { username: "bob@example.com", groups: ["security"] };
const now = Date.parse("2026-12-05T10:30:00Z");

function run(
  name: string,
  changes: Partial<NonNullable<LangGraphRun["status"]>> = {},
): LangGraphRun {
  return {
    metadata: { name, namespace: "agents" },
    spec: {
      template: {},
      access: [{ connection: "kb-api", actions: ["read", "write"] }],
      maxDuration: "30m",
      reason: "nightly refresh",
    },
    status: {
      phase: "AwaitingApproval",
      requester: { username: "alice@example.com" },
      approval: {
        requestedAt: "2026-12-05T10:00:00Z",
        expiresAt: "2026-12-05T11:00:00Z",
        requirements: [
          { policy: "gated", approvers: [{ kind: "Group", name: "security" }], approvals: 2 },
        ],
        decisions: [
          {
            approval: "r-1",
            approver: "carol@example.com",
            decision: "Approve",
            reason: "ok",
            at: "2026-12-05T10:10:00Z",
          },
        ],
      },
      ...changes,
    },
  };
}

describe("kubectl jit approvals", () => {
  it("lists waiting runs whose approvers include the caller, with progress", () => {
    const waiting = waitingFor(
      bob,
      [
        run("mine-to-decide"),
        run("running", { phase: "Running" }),
        run("bobs-own", { requester: { username: "bob@example.com" } }),
        run("not-my-group", {
          approval: {
            requirements: [
              { policy: "p", approvers: [{ kind: "User", name: "dave" }], approvals: 1 },
            ],
          },
        }),
        run("already-decided", {
          approval: {
            requirements: [
              { policy: "p", approvers: [{ kind: "Group", name: "security" }], approvals: 1 },
            ],
            decisions: [
              {
                approval: "x",
                approver: "bob@example.com",
                decision: "Approve",
                reason: "y",
                at: "2026-12-05T10:00:00Z",
              },
            ],
          },
        }),
      ],
      [],
    );
    assert.deepEqual(
      waiting.map((w) => w.name),
      ["mine-to-decide"],
    );
    assert.equal(waiting[0]?.approvals, "1/2");
    assert.equal(waiting[0]?.access, "kb-api=read,write");
    assert.equal(
      formatWaiting(waiting, "text", false, now),
      "NAME             REQUESTER           APPROVALS   WAITING   REQUEST\n" +
        "mine-to-decide   alice@example.com   1/2         30m       run: nightly refresh\n",
    );
    assert.match(
      formatWaiting(waiting, "wide", true, now),
      /^NAMESPACE .* RUN .* ACCESS .* APPROVERS .* EXPIRES\n/,
    );
    assert.deepEqual(JSON.parse(formatWaiting(waiting, "json", false, now)), waiting);
    assert.deepEqual(parse(formatWaiting(waiting, "yaml", false, now)), waiting);
    assert.equal(formatWaiting([], "text", false, now), "");
  });

  it("lists a held command pending for the caller by its name, with what it would send", () => {
    const held: HeldCommand = {
      metadata: {
        name: "mine-to-decide-x7k2q",
        namespace: "agents",
        creationTimestamp: new Date(now - 5_000),
      },
      spec: {
        run: "mine-to-decide",
        connection: "kb-api",
        action: "write",
        summary: "POST /v1/docs",
        http: { method: "POST", path: "/v1/docs" },
        body: { sha256: "ab".repeat(32), bytes: 17 },
      },
      status: {
        phase: "Pending",
        approvers: [{ kind: "Group", name: "security" }],
        approvals: 1,
        decisions: [],
      },
    };
    const running = run("mine-to-decide", { phase: "Running" });
    const [command] = waitingFor(bob, [running], [held]);
    assert.equal(command?.kind, "command");
    assert.equal(command?.name, "mine-to-decide-x7k2q");
    assert.equal(command?.request, "kb-api: POST /v1/docs (body sha256 abababababab…, 17 bytes)");
    assert.equal(command?.approvals, "0/1");
    assert.deepEqual(
      waitingFor(bob, [running], [{ ...held, status: { ...held.status, phase: "Approved" } }]),
      [],
    );
    const own = run("mine-to-decide", {
      phase: "Running",
      requester: { username: "bob@example.com" },
    });
    assert.deepEqual(waitingFor(bob, [own], [held]), [], "never a command of the caller's own run");
  });

  it("writes ages as kubectl does", () => {
    assert.equal(age("2026-12-05T10:29:05Z", now), "55s");
    assert.equal(age("2026-12-05T09:00:00Z", now), "90m");
    assert.equal(age("2026-12-04T10:30:00Z", now), "24h");
    assert.equal(age("2026-12-01T10:30:00Z", now), "4d");
  });
});
