// Run-level approvals on the real control plane, decided with kubectl jit as the real identities:
// alice's run waits for group security; bob approves or denies it; alice cannot approve her own,
// mallory cannot approve at all, nobody can forge an approver, and an undecided run expires.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import { type Approval, annotations, group, version } from "../../api/v1alpha1.ts";
import { SqliteSessionStore } from "../../operator/src/sessions/sqlite-store.ts";
import { WebhookReceiver } from "../../operator/src/testing/webhook-receiver.ts";
import {
  clusterDir,
  eventually,
  expectApiError,
  kubeConfigFor,
  kubectlJit,
  statusOf,
} from "../lib/cluster.ts";
import { useOperator } from "../lib/operator.ts";
import {
  createObject,
  createRun,
  jobsOfRun,
  readRun,
  runManifest,
  waitForPhase,
} from "../lib/runs.ts";

const security = [{ kind: "Group" as const, name: "security" }];

describe("run approvals", () => {
  const suite = useOperator("approvals", {
    runs: true,
    policy: {
      runApproval: { approvers: security, approvals: 1, timeout: "1h" },
      notify: { webhook: { secretRef: { name: "approvals-webhook" } } },
    },
  });
  let receiver: WebhookReceiver;
  before(async () => {
    receiver = await WebhookReceiver.start();
    await kubeConfigFor("admin")
      .makeApiClient(CoreV1Api)
      .createNamespacedSecret({
        namespace: suite.ns.name,
        body: {
          metadata: { name: "approvals-webhook" },
          stringData: { url: receiver.url, "ca.crt": receiver.ca.certPem },
        },
      });
  });
  after(() => receiver?.close());

  it("holds alice's run without a Job until bob approves it with kubectl jit approve", async () => {
    const ns = suite.ns.name;
    await createRun("alice", ns, runManifest("needs-bob", { reason: "refresh the index" }));
    const waiting = await waitForPhase(ns, "needs-bob", "AwaitingApproval");
    assert.equal(waiting.status?.startedAt, undefined);
    assert.deepEqual(await jobsOfRun(ns, "needs-bob"), []);

    const listed = kubectlJit("bob", "approvals", "-n", ns);
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /^NAME\s+REQUESTER\s+APPROVALS\s+WAITING\s+REQUEST\n/);
    assert.match(
      listed.stdout,
      /needs-bob\s+alice@example.com\s+0\/1\s+\d+s\s+run: refresh the index/,
    );
    const asJson = JSON.parse(kubectlJit("bob", "approvals", "-n", ns, "-o", "json").stdout);
    assert.equal(asJson[0]?.name, "needs-bob");
    assert.doesNotMatch(
      kubectlJit("alice", "approvals", "-n", ns).stdout,
      /needs-bob/,
      "not her own",
    );

    const own = kubectlJit("alice", "approve", "needs-bob", "-n", ns, "--reason", "mine");
    assert.equal(own.status, 1);
    assert.match(own.stderr, /alice@example.com requested the run and may not decide its approval/);
    const stranger = kubectlJit("mallory", "approve", "needs-bob", "-n", ns, "--reason", "sure");
    assert.equal(stranger.status, 1);
    assert.match(
      stranger.stderr,
      /mallory@example.com is not among the run's approvers: Group security/,
    );
    const noReason = kubectlJit("bob", "approve", "needs-bob", "-n", ns);
    assert.equal(noReason.status, 2);
    assert.match(noReason.stderr, /approve needs --reason/);

    const approved = kubectlJit(
      "bob",
      "approve",
      "needs-bob",
      "-n",
      ns,
      "--reason",
      "checked the diff",
    );
    assert.equal(approved.status, 0, approved.stderr);
    assert.match(
      approved.stdout,
      /^approval.langgraph-jit.dev\/needs-bob-\w+ created: Approve LangGraphRun/,
    );
    const run = await waitForPhase(ns, "needs-bob", "Running");
    const approvedAt = Date.parse(run.status?.approval?.decisions?.[0]?.at ?? "");
    assert.equal(run.status?.approval?.decisions?.[0]?.approver, "bob@example.com");
    assert.equal(run.status?.approval?.decisions?.[0]?.reason, "checked the diff");
    assert.ok(
      Date.parse(run.status?.startedAt ?? "") >= approvedAt - 1_000,
      "the deadline counts from approval",
    );
    const approvedCondition = run.status?.conditions?.find((c) => c.type === "Approved");
    assert.equal(approvedCondition?.status, "True");
    assert.match(
      approvedCondition?.message ?? "",
      /approved by bob@example.com \(checked the diff\)/,
    );

    const again = kubectlJit("bob", "approve", "needs-bob", "-n", ns, "--reason", "twice");
    assert.equal(again.status, 1);
    assert.match(again.stderr, /is not waiting for approval \(phase Running\)/);
  });

  it("refuses alice a run that claims to record a tagged pod: only the operator makes those", async () => {
    const sourced = runManifest("sourced");
    delete sourced.spec.template;
    sourced.spec.source = { pod: "kb-server-x", uid: "u-1" };
    const error = await createRun("alice", suite.ns.name, sourced).then(
      () => assert.fail("admitted"),
      (e: unknown) => e,
    );
    assert.equal(statusOf(error), 403);
    assert.match(
      JSON.parse((error as { body: string }).body).message,
      /spec\.source: only langgraph-jit records a tagged pod as a run; write spec\.template instead/,
    );
  });

  it("refuses an approver the request writes itself", async () => {
    const ns = suite.ns.name;
    await createRun("alice", ns, runManifest("forged"));
    await waitForPhase(ns, "forged", "AwaitingApproval");
    const forged: Approval = {
      apiVersion: `${group}/${version}`,
      kind: "Approval",
      metadata: {
        name: "forged-bob",
        annotations: {
          [annotations.approver]: JSON.stringify({
            username: "bob@example.com",
            groups: ["security"],
          }),
        },
      },
      spec: { run: "forged", decision: "Approve", reason: "trust me" },
    };
    assert.equal(await expectApiError(createObject("mallory", ns, "approvals", forged)), 403);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    assert.deepEqual(await jobsOfRun(ns, "forged"), []);
  });

  it("denies a run bob denies with kubectl jit deny", async () => {
    const ns = suite.ns.name;
    await createRun("alice", ns, runManifest("risky"));
    await waitForPhase(ns, "risky", "AwaitingApproval");
    const denied = kubectlJit(
      "bob",
      "deny",
      "risky",
      "-n",
      ns,
      "--reason",
      "not during the freeze",
    );
    assert.equal(denied.status, 0, denied.stderr);
    const run = await waitForPhase(ns, "risky", "Denied");
    const authorized = run.status?.conditions?.find((c) => c.type === "Authorized");
    assert.equal(authorized?.reason, "ApprovalDenied");
    assert.equal(authorized?.message, "denied by bob@example.com: not during the freeze");
    assert.deepEqual(await jobsOfRun(ns, "risky"), []);
    // The run never had a sidecar; its session still says who stopped it.
    const counted = await eventually("the decision in status.session", async () => {
      const current = await readRun(ns, "risky");
      return current?.status?.session?.events === 1 && current.status.session;
    });
    assert.deepEqual(counted, { events: 1, denied: 0, masked: 0 });
    const store = new SqliteSessionStore(
      join(clusterDir, "logs", `sessions-${suite.system.name}.db`),
    );
    try {
      const [decision, ...more] = await store.list(run.metadata?.uid ?? "");
      assert.deepEqual(more, []);
      assert.equal(decision?.seq, 0);
      assert.equal(decision?.kind, "approval");
      assert.deepEqual(decision?.approval, {
        decision: "Denied",
        message: "denied by bob@example.com: not during the freeze",
      });
    } finally {
      await store.close();
    }
  });

  it("tells the policy's HTTPS webhook what waits and how it was decided, retrying a failure", async () => {
    const ns = suite.ns.name;
    // The 503 must meet this run's notice, not the previous test's Denied one still on its way.
    await eventually("the earlier notices", async () => receiver.noticesOf("risky").length === 2);
    receiver.answers.push(503);
    await createRun("alice", ns, runManifest("announced", { reason: "<!channel> rebuild" }));
    await waitForPhase(ns, "announced", "AwaitingApproval");
    const waiting = await eventually("the Waiting notice, retried after a 503", async () =>
      receiver.received.find((r) => r.status === 200 && r.body.langgraphJit.name === "announced"),
    );
    assert.deepEqual(
      receiver.received
        .filter((r) => r.body.langgraphJit.name === "announced")
        .map((r) => r.status),
      [503, 200],
    );
    assert.equal(waiting.contentType, "application/json");
    assert.match(waiting.body.text, /^\*LangGraphRun [\w-]+\/announced\* waits for approval/);
    assert.match(waiting.body.text, /Requested by alice@example.com .*: &lt;!channel&gt; rebuild/);
    assert.match(waiting.body.text, /waiting for 1 of Group security/);

    const approved = kubectlJit("bob", "approve", "announced", "-n", ns, "--reason", "ok");
    assert.equal(approved.status, 0, approved.stderr);
    await waitForPhase(ns, "announced", "Running");
    const states = await eventually("the decision's notice", async () => {
      const told = receiver.noticesOf("announced").map((n) => n.state);
      return told.length === 2 && told;
    });
    assert.deepEqual(states, ["Waiting", "Approved"]);
    assert.match(
      receiver.noticesOf("announced")[1]?.message ?? "",
      /approved by bob@example.com \(ok\)/,
    );
  });
});

describe("run approvals nobody decides", () => {
  const suite = useOperator("approval-timeout", {
    runs: true,
    policy: { runApproval: { approvers: security, approvals: 1, timeout: "4s" } },
  });

  it("denies the run with ApprovalExpired at its timeout", async () => {
    const ns = suite.ns.name;
    await createRun("alice", ns, runManifest("forgotten"));
    await waitForPhase(ns, "forgotten", "AwaitingApproval");
    const run = await waitForPhase(ns, "forgotten", "Denied", 20_000);
    assert.equal(
      run.status?.conditions?.find((c) => c.type === "Authorized")?.reason,
      "ApprovalExpired",
    );
    assert.deepEqual(await jobsOfRun(ns, "forgotten"), []);
  });
});
