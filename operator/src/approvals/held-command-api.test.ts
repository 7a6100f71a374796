// A held command is decided by the Approvals naming it, counted from the cache on every answer:
// only a run whose grant holds the action may open one; only approvers the grant names (never
// the requester) count; one Deny, the timeout, or the run's end refuse it; approving one command
// approves no other.
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { credentialApi, type HoldRequest, type HoldState } from "../../../api/credentials.ts";
import {
  type AccessPolicy,
  annotations,
  type HeldCommand,
  type LangGraphRunStatus,
  type Requester,
} from "../../../api/v1alpha1.ts";
import type { VerifiedRunToken } from "../credentials/run-token.ts";
import { StatusSeal } from "../runs/status-seal.ts";
import { HttpError, type Route } from "../server/https-server.ts";
import { httpConnection } from "../testing/connections.ts";
import { FakeCluster } from "../testing/fake-cluster.ts";
import { alice, testRun } from "../testing/runs.ts";
import { heldCommandRoutes } from "./held-command-api.ts";
import type { HeldCommands } from "./held-commands.ts";

const seal = new StatusSeal(Buffer.alloc(32, 4));
const start = Date.parse("2026-12-05T10:00:00Z");
const bob: Requester = { username: "bob@example.com", uid: "b-1", groups: ["security"] };
const carol: Requester = { username: "carol@example.com", uid: "c-1", groups: ["security"] };
const post: HoldRequest = {
  connection: "kb-api",
  action: "write",
  http: { method: "POST", path: "/v1/docs" },
  body: { sha256: "ab".repeat(32), bytes: 2 },
};

function setup() {
  const cluster = new FakeCluster();
  const clock = { now: start };
  const policy: AccessPolicy = {
    metadata: { name: "kb", namespace: "agents" },
    spec: {
      subjects: [{ kind: "Group", name: "ml-platform" }],
      maxDuration: "1h",
      grants: [
        {
          connection: "kb-api",
          actions: ["read", "write"],
          approval: {
            actions: ["write"],
            approvers: [{ kind: "Group", name: "security" }],
            approvals: 1,
            timeout: "10m",
          },
        },
      ],
    },
  };
  cluster.policies.put(policy);
  cluster.connections.put({
    ...httpConnection(),
    metadata: { name: "kb-api", namespace: "agents" },
  });
  const status: LangGraphRunStatus = {
    phase: "Running",
    startedAt: "2026-12-05T10:00:00Z",
    deadline: "2026-12-05T11:00:00Z",
  };
  const base = testRun({ requester: alice });
  base.spec.access = [{ connection: "kb-api", actions: ["read", "write"] }];
  const run = cluster.runs.put({
    ...base,
    status: { ...status, seal: seal.ofStatus("uid-r", status) },
  });
  let made = 0;
  const store: HeldCommands = {
    create: async (namespace, command) =>
      cluster.heldCommands.put({
        ...command,
        metadata: {
          ...command.metadata,
          name: `${command.metadata?.generateName}${++made}`,
          namespace,
          creationTimestamp: new Date(clock.now),
        },
      }),
    read: async (namespace, name) => cluster.heldCommands.get(namespace, name),
    writeStatus: async (command, written) => {
      cluster.heldCommands.put({ ...command, status: written });
    },
  };
  const token = (uid = "uid-r"): VerifiedRunToken => ({
    sub: uid,
    jti: "j",
    run: { namespace: "agents", name: "r", uid, deadline: "2026-12-05T11:00:00Z" },
    pod: { name: "p", uid: "pod-1" },
    grants: [
      {
        connection: "kb-api",
        type: "http",
        actions: ["read", "write"],
        approval: policy.spec.grants[0]?.approval,
      },
    ],
  });
  const tokens = new Map([
    ["alice-run", token()],
    ["other-run", token("uid-other")],
  ]);
  const routes = heldCommandRoutes({
    verify: async (raw) => {
      const verified = tokens.get(raw);
      if (!verified) throw new HttpError(401, "TokenInvalid", "bad token");
      return verified;
    },
    cache: cluster,
    store,
    seal,
    now: () => clock.now,
  });
  const hold = async (request: unknown, bearer = "alice-run"): Promise<HoldState> => {
    const body = Readable.from([
      Buffer.from(JSON.stringify(request)),
    ]) as unknown as IncomingMessage;
    body.headers = { authorization: `Bearer ${bearer}` };
    const answer = await (routes[credentialApi.holds] as Route).handle(
      body,
      new URL(`https://operator${credentialApi.holds}`),
      new AbortController().signal,
    );
    assert.equal(answer.status, 201);
    return answer.body as HoldState;
  };
  const state = async (name: string, waitSeconds = 0, bearer = "alice-run"): Promise<HoldState> => {
    const answer = await (routes[credentialApi.holdState] as Route).handle(
      { headers: { authorization: `Bearer ${bearer}` } } as IncomingMessage,
      new URL(`https://operator${credentialApi.holdState}?name=${name}&waitSeconds=${waitSeconds}`),
      new AbortController().signal,
    );
    return answer.body as HoldState;
  };
  let approvalSeq = 0;
  const decide = (command: string, approver: Requester, decision: "Approve" | "Deny" = "Approve") =>
    cluster.approvals.put({
      metadata: {
        name: `a-${++approvalSeq}`,
        namespace: "agents",
        creationTimestamp: new Date(clock.now),
        annotations: {
          [annotations.approver]: JSON.stringify(approver),
          [annotations.runUid]: "uid-r",
        },
      },
      spec: { run: "r", command, decision, reason: `because ${approvalSeq}` },
    });
  return { cluster, clock, run, hold, state, decide };
}

async function refusal(call: Promise<unknown>): Promise<string> {
  const error = (await call.then(
    () => assert.fail("it was accepted"),
    (e: unknown) => e,
  )) as HttpError;
  return `${error.status} ${error.reason}: ${error.message}`;
}

describe("held commands", () => {
  it("opens a HeldCommand owned by the run, showing the request and its body's digest", async () => {
    const { cluster, hold } = setup();
    const opened = await hold(post);
    assert.equal(opened.phase, "Pending");
    assert.equal(opened.expiresAt, "2026-12-05T10:10:00.000Z");
    const command = cluster.heldCommands.get("agents", opened.name) as HeldCommand;
    assert.equal(command.spec.summary, "POST /v1/docs");
    assert.deepEqual(command.spec.body, post.body);
    assert.equal(command.metadata?.annotations?.[annotations.runUid], "uid-r");
    assert.equal(command.metadata?.ownerReferences?.[0]?.uid, "uid-r");
  });

  it("forwards on the grant's approvers only: not the requester, not a stranger", async () => {
    const { hold, state, decide } = setup();
    const { name } = await hold(post);
    decide(name, alice);
    decide(name, { username: "mallory@example.com", groups: [] });
    assert.equal((await state(name)).phase, "Pending");
    decide(name, bob);
    const approved = await state(name);
    assert.equal(approved.phase, "Approved");
    assert.match(approved.message, /^approved by bob@example.com \(because 3\)$/);
  });

  it("approves one command only, never a later one that looks the same", async () => {
    const { hold, state, decide } = setup();
    const first = await hold(post);
    decide(first.name, bob);
    const second = await hold(post);
    assert.notEqual(second.name, first.name);
    assert.equal((await state(second.name)).phase, "Pending");
  });

  it("wakes the sidecar's long poll when the decision comes", async () => {
    const { hold, state, decide } = setup();
    const { name } = await hold(post);
    const polled = state(name, 30);
    setImmediate(() => decide(name, carol, "Deny"));
    const denied = await polled;
    assert.equal(denied.phase, "Denied");
    assert.match(denied.message, /^denied by carol@example.com: because 1$/);
  });

  it("expires undecided, and refuses once the run ends", async () => {
    const { cluster, clock, run, hold, state } = setup();
    const { name } = await hold(post);
    clock.now += 10 * 60_000;
    assert.equal((await state(name)).phase, "Expired");

    const other = await hold(post);
    clock.now -= 5 * 60_000;
    cluster.runs.put({
      ...run,
      status: { ...run.status, credential: { revokedAt: "2026-12-05T10:05:00Z" } },
    });
    const ended = await state(other.name);
    assert.equal(ended.phase, "Denied");
    assert.match(ended.message, /no longer holds its credential/);
    assert.match(await refusal(hold(post)), /^401 Revoked/);
  });

  it("refuses what the grant does not hold, malformed requests, and another run's commands", async () => {
    const { hold, state } = setup();
    assert.match(
      await refusal(hold({ ...post, action: "read" })),
      /^403 AccessRevoked: the run's grant does not hold "read"/,
    );
    assert.match(await refusal(hold({ ...post, connection: "kb-db" })), /^403 AccessRevoked/);
    assert.match(
      await refusal(hold({ ...post, http: undefined })),
      /^400 BadRequest: http, sql: exactly one/,
    );
    assert.match(
      await refusal(hold({ ...post, body: { sha256: "x", bytes: 1 } })),
      /^400 BadRequest: body.sha256/,
    );
    assert.match(
      await refusal(hold({ ...post, http: { method: "post", path: "/x" } })),
      /^400 BadRequest: http.method/,
    );
    const { name } = await hold(post);
    assert.match(await refusal(state(name, 0, "other-run")), /^401 Revoked|^404 NotFound/);
  });

  it("bounds the commands one run may hold at once", async () => {
    const { hold } = setup();
    for (let i = 0; i < 16; i++) await hold(post);
    assert.match(
      await refusal(hold(post)),
      /^429 TooManyRequests: the run already has 16 commands waiting/,
    );
  });
});
