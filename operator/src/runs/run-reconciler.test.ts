// The run lifecycle's decisions, against an in-memory cluster: who gets a Job, when a run ends,
// and that its credentials are revoked before any terminal status says so. The e2e suites prove
// the same lifecycle against the real API server.
import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import type { V1Pod, V1PodSpec } from "@kubernetes/client-node";
import pino from "pino";
import {
  type AccessPolicy,
  annotations,
  type Connection,
  type LangGraphRun,
  type Requester,
  revokeFinalizer,
} from "../../../api/v1alpha1.ts";
import { clusterConnection, postgresConnection } from "../testing/connections.ts";
import { apiError, FakeCluster } from "../testing/fake-cluster.ts";
import { alice, testRun } from "../testing/runs.ts";
import { findCondition } from "./conditions.ts";
import { runIdentityEnv, withSidecar } from "./job-builder.ts";
import type { RunLifecycleDeps } from "./run-lifecycle.ts";
import { RunReconciler } from "./run-reconciler.ts";
import { StatusSeal } from "./status-seal.ts";

const seal = new StatusSeal(Buffer.alloc(32, 3));
const start = new Date("2026-12-05T10:00:00.000Z");
const key = "agents/r";

function policy(spec: Partial<AccessPolicy["spec"]> = {}): AccessPolicy {
  return {
    metadata: { name: "ml-platform", namespace: "agents" },
    spec: {
      subjects: [{ kind: "Group", name: "ml-platform" }],
      maxDuration: "1h",
      grants: [{ connection: "kb-postgres", actions: ["read"] }],
      ...spec,
    },
  };
}

function connection(): Connection {
  return { ...postgresConnection(), metadata: { name: "kb-postgres", namespace: "agents" } };
}

interface Harness {
  cluster: FakeCluster;
  deps: RunLifecycleDeps;
  reconciler: RunReconciler;
  revoked: string[];
  accountsEnsured: string[];
  clock: { now: Date };
  /** Log of what happened, in order: revocations and status phases. */
  order: string[];
  run(): LangGraphRun | undefined;
}

function harness(options: { requesterMay?: boolean; operatorNamespace?: string } = {}): Harness {
  const cluster = new FakeCluster();
  const revoked: string[] = [];
  const accountsEnsured: string[] = [];
  const order: string[] = [];
  const clock = { now: start };
  const write = cluster.status.write;
  cluster.status.write = async (run, status) => {
    order.push(`status ${status.phase}`);
    return write(run, status);
  };
  const deps: RunLifecycleDeps = {
    logger: pino({ level: "silent" }),
    cache: cluster,
    status: cluster.status,
    finalizers: cluster.finalizers,
    workloads: cluster.workloads,
    events: cluster.eventSink,
    notifier: cluster.notifier,
    sessions: cluster.sessions,
    revoker: {
      revoke: async (run, connections) => {
        const names = connections.map((c) => c.metadata?.name).join(",");
        revoked.push(`${run.metadata?.name}:${names}`);
        order.push("revoke");
      },
    },
    serviceAccounts: {
      ensure: async (namespace, name) => {
        accountsEnsured.push(`${namespace}/${name}`);
        return undefined;
      },
    },
    seal,
    templateReview: {
      rules: { sidecarUid: 1337, capture: false },
      requesterMay: async () => options.requesterMay ?? true,
    },
    sidecar: {
      image: "sidecar:test",
      imagePullPolicy: "Never",
      uid: 1337,
      operatorUrl: "https://operator.langgraph-jit.svc:8443",
      capture: false,
    },
    operatorCaPem: () => "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    operatorEgress: { to: [{ ipBlock: { cidr: "10.0.0.1/32" } }] },
    operatorNamespace: options.operatorNamespace ?? "langgraph-jit",
    resolver: {
      clusterDomain: "cluster.local",
      readService: async () => undefined,
      readEndpointSlices: async () => [],
      resolveHost: async () => ["10.1.2.3"],
    },
    now: () => clock.now,
  };
  cluster.policies.put(policy());
  cluster.connections.put(connection());
  return {
    cluster,
    deps,
    reconciler: new RunReconciler(deps),
    revoked,
    accountsEnsured,
    clock,
    order,
    run: () => cluster.runs.get("agents", "r"),
  };
}

/** Reconciles until the run asks for nothing more now (no immediate requeue): at most 10 passes. */
async function settle(h: Harness): Promise<void> {
  for (let pass = 0; pass < 10; pass++) {
    const before = h.run()?.metadata?.resourceVersion;
    const result = await h.reconciler.reconcile(key);
    const after = h.run()?.metadata?.resourceVersion;
    if (result?.requeueAfterMs !== 0 && before === after) return;
  }
  assert.fail("the run did not settle in 10 reconciles");
}

function condition(run: LangGraphRun | undefined, type: string) {
  return findCondition(run?.status?.conditions, type);
}

function jobOf(h: Harness) {
  return h.cluster.jobs.get("agents", "r");
}

/** Marks the run's Job finished with a condition, as the Job controller would. */
function finishJob(h: Harness, type: "Complete" | "Failed", reason?: string) {
  const job = jobOf(h);
  assert.ok(job, "the run has a Job");
  h.cluster.jobs.put({
    ...job,
    status: { conditions: [{ type, status: "True", ...(reason ? { reason } : {}) }] },
  });
}

async function runningRun(h: Harness): Promise<void> {
  h.cluster.runs.put(testRun({ requester: alice }));
  await settle(h);
  assert.equal(h.run()?.status?.phase, "Running");
  assert.ok(jobOf(h));
}

describe("RunReconciler", () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });

  it("adds its finalizer before deciding anything", async () => {
    h.cluster.runs.put(testRun({ requester: alice }));
    assert.equal(await h.reconciler.reconcile(key), undefined);
    assert.deepEqual(h.run()?.metadata?.finalizers, [revokeFinalizer]);
    assert.equal(h.run()?.status, undefined);
    assert.equal(jobOf(h), undefined);
  });

  it("starts a granted run: deadline fixed from maxDuration, sealed status, its Job and NetworkPolicy", async () => {
    await runningRun(h);
    const run = h.run();
    assert.equal(run?.status?.startedAt, "2026-12-05T10:00:00Z");
    assert.equal(run?.status?.deadline, "2026-12-05T10:30:00Z");
    assert.equal(run?.status?.requester?.username, alice.username);
    assert.ok(run && seal.statusIsTrusted(run), "the status carries the operator's seal");
    assert.equal(condition(run, "Authorized")?.message, "granted by AccessPolicy ml-platform");
    assert.equal(condition(run, "Ready")?.status, "True");
    const job = jobOf(h);
    assert.equal(run?.status?.jobUID, job?.metadata?.uid);
    assert.equal(
      job?.metadata?.annotations?.[annotations.seal],
      seal.ofJob(run as LangGraphRun, "r"),
    );
    assert.equal(job?.spec?.activeDeadlineSeconds, 1800);
    assert.equal(job?.spec?.template.spec?.serviceAccountName, "langgraph-jit-run");
    assert.deepEqual(h.accountsEnsured, ["agents/langgraph-jit-run"]);
    assert.ok(
      h.cluster.networkPolicies.get("agents", "r"),
      "egress is limited before the Job runs",
    );
    assert.deepEqual(
      h.cluster.events.map((e) => e.reason),
      ["Authorized", "JobCreated"],
    );
    assert.deepEqual(h.revoked, []);
  });

  it("asks to be woken at the deadline while the Job runs", async () => {
    await runningRun(h);
    h.clock.now = new Date(start.getTime() + 10 * 60_000);
    assert.deepEqual(await h.reconciler.reconcile(key), { requeueAfterMs: 20 * 60_000 });
  });

  it("denies a run without a stamped requester, creating nothing", async () => {
    h.cluster.runs.put(testRun());
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Denied");
    assert.equal(condition(h.run(), "Authorized")?.reason, "RequesterUnknown");
    assert.equal(jobOf(h), undefined);
    assert.deepEqual(h.revoked, [], "nothing was started, so nothing is revoked");
  });

  it("denies a requester no policy grants, with the decision's reason", async () => {
    h.cluster.runs.put(testRun({ requester: { username: "mallory@example.com", groups: [] } }));
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Denied");
    assert.equal(condition(h.run(), "Authorized")?.status, "False");
    assert.match(condition(h.run(), "Authorized")?.message ?? "", /mallory@example.com/);
    assert.equal(h.cluster.events.at(-1)?.reason, "Denied");
    assert.equal(jobOf(h), undefined);
  });

  it("denies a pod template the requester could not run themselves", async () => {
    h = harness({ requesterMay: false });
    const run = testRun({ requester: alice });
    assert.ok(run.spec.template);
    run.spec.template.spec = {
      containers: [{ name: "graph", image: "g" }],
      volumes: [{ name: "payroll", secret: { secretName: "payroll" } }],
    };
    h.cluster.runs.put(run);
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Denied");
    assert.equal(condition(h.run(), "Authorized")?.reason, "TemplateRefused");
    assert.match(
      condition(h.run(), "Authorized")?.message ?? "",
      /spec\.template\.spec\.volumes\[0\]/,
    );
    assert.equal(jobOf(h), undefined);
  });

  it("holds a run whose policy needs approval without a Job, and denies it when the grant goes", async () => {
    h.cluster.policies.put(
      policy({
        runApproval: {
          approvers: [{ kind: "User", name: "bob@example.com" }],
          approvals: 1,
          timeout: "1h",
        },
      }),
    );
    h.cluster.runs.put(testRun({ requester: alice }));
    await settle(h);
    assert.equal(h.run()?.status?.phase, "AwaitingApproval");
    assert.equal(condition(h.run(), "Approved")?.message, "waiting for 1 of User bob@example.com");
    assert.equal(h.run()?.status?.startedAt, undefined, "the deadline does not run yet");
    assert.equal(jobOf(h), undefined);
    await settle(h);
    assert.equal(h.run()?.status?.phase, "AwaitingApproval", "still waiting, nothing else written");

    const withdrawn = h.cluster.policies.get("agents", "ml-platform");
    assert.ok(withdrawn);
    h.cluster.policies.remove(withdrawn);
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Denied");
    assert.match(condition(h.run(), "Authorized")?.message ?? "", /no longer holds/);
    assert.equal(jobOf(h), undefined);
    assert.deepEqual(
      h.cluster.notices.map(({ policies, notice }) => [policies, notice.state, notice.kind]),
      [
        [["ml-platform"], "Waiting", "LangGraphRun"],
        [["ml-platform"], "Denied", "LangGraphRun"],
      ],
      "the policy's webhook hears that the run waits and how it ended, once each",
    );
    assert.match(h.cluster.notices[1]?.notice.message ?? "", /no longer holds/);
  });

  it("fails a run whose grant is withdrawn between authorization and its Job", async () => {
    h.cluster.runs.put(testRun({ requester: alice }));
    await h.reconciler.reconcile(key); // finalizer
    await h.reconciler.reconcile(key); // Running, deadline fixed
    assert.equal(h.run()?.status?.phase, "Running");
    const granted = h.cluster.policies.get("agents", "ml-platform");
    assert.ok(granted);
    h.cluster.policies.remove(granted);
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Failed");
    assert.match(condition(h.run(), "Complete")?.message ?? "", /grant no longer holds/);
    assert.equal(jobOf(h), undefined);
    assert.deepEqual(h.revoked, ["r:kb-postgres"], "a started run is revoked even without a Job");
  });

  it("revokes before it records Succeeded when the Job completes", async () => {
    await runningRun(h);
    h.order.length = 0;
    finishJob(h, "Complete");
    h.clock.now = new Date(start.getTime() + 5 * 60_000);
    await settle(h);
    const run = h.run();
    assert.equal(run?.status?.phase, "Succeeded");
    assert.equal(run?.status?.completedAt, "2026-12-05T10:05:00Z");
    assert.equal(run?.status?.credential?.revokedAt, "2026-12-05T10:05:00Z");
    assert.deepEqual(h.order, ["revoke", "status Succeeded"]);
    assert.deepEqual(h.revoked, ["r:kb-postgres"]);
    assert.ok(jobOf(h), "a completed Job is kept for its logs");
    await settle(h);
    assert.deepEqual(h.revoked, ["r:kb-postgres"], "revoked once");
  });

  it("expires a run at its deadline: the Job goes, the credential is revoked", async () => {
    await runningRun(h);
    h.clock.now = new Date(start.getTime() + 30 * 60_000);
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Expired");
    assert.equal(condition(h.run(), "Complete")?.reason, "DeadlineExceeded");
    assert.equal(jobOf(h), undefined);
    assert.deepEqual(h.revoked, ["r:kb-postgres"]);
  });

  it("takes the Job's own deadline as the run's expiry, and other failures as Failed", async () => {
    await runningRun(h);
    finishJob(h, "Failed", "DeadlineExceeded");
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Expired");

    const other = harness();
    await runningRun(other);
    finishJob(other, "Failed", "BackoffLimitExceeded");
    await settle(other);
    assert.equal(other.run()?.status?.phase, "Failed");
    assert.equal(condition(other.run(), "Complete")?.reason, "JobFailed");
    assert.deepEqual(other.revoked, ["r:kb-postgres"]);
  });

  it("fails a run whose Job was replaced by one it did not make", async () => {
    await runningRun(h);
    const job = jobOf(h);
    assert.ok(job);
    h.cluster.jobs.remove(job);
    h.cluster.jobs.put({
      ...job,
      metadata: { ...job.metadata, uid: "someone-else", annotations: {} },
    });
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Failed");
    assert.equal(condition(h.run(), "Complete")?.reason, "JobConflict");
    assert.deepEqual(h.revoked, ["r:kb-postgres"]);
  });

  it("fails a run whose Job was deleted after it started", async () => {
    await runningRun(h);
    const job = jobOf(h);
    assert.ok(job);
    h.cluster.jobs.remove(job);
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Failed");
    assert.equal(condition(h.run(), "Complete")?.reason, "JobDeleted");
    assert.equal(jobOf(h), undefined, "no second Job is created");
  });

  it("does not trust a phase it did not seal", async () => {
    const forged = testRun({ requester: alice });
    forged.metadata = { ...forged.metadata, finalizers: [revokeFinalizer] };
    forged.status = {
      phase: "Running",
      startedAt: "2026-12-05T10:00:00Z",
      deadline: "2027-01-01T00:00:00Z",
    };
    h.cluster.runs.put(forged);
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Failed");
    assert.equal(condition(h.run(), "Complete")?.reason, "StatusNotSealed");
    assert.equal(jobOf(h), undefined);
  });

  it("cancels a run deleted while running: Job and NetworkPolicy gone, revoked, then released", async () => {
    await runningRun(h);
    const run = h.run();
    assert.ok(run);
    h.cluster.delete(h.cluster.runs, run);
    await h.reconciler.reconcile(key);
    assert.equal(h.run(), undefined, "the finalizer was removed, so the run is gone");
    assert.equal(h.cluster.statusWrites.at(-1)?.phase, "Cancelled");
    assert.equal(jobOf(h), undefined);
    assert.equal(h.cluster.networkPolicies.get("agents", "r"), undefined);
    assert.deepEqual(h.revoked, ["r:kb-postgres"]);
  });

  it("keeps the finalizer when revocation fails, so deletion waits for a retry", async () => {
    const failing = harness();
    await runningRun(failing);
    const run = failing.run();
    assert.ok(run);
    failing.cluster.delete(failing.cluster.runs, run);
    // A revoker that cannot reach the database: the reconcile throws and is retried.
    const reconciler = new RunReconciler({
      ...failing.deps,
      revoker: { revoke: async () => Promise.reject(new Error("connection refused")) },
    });
    await assert.rejects(reconciler.reconcile(key), /connection refused/);
    assert.deepEqual(failing.run()?.metadata?.finalizers, [revokeFinalizer]);
    assert.equal(failing.run()?.status?.phase, "Running");
  });

  it("lets a status conflict surface as 409, for a quiet retry", async () => {
    h.cluster.runs.put(testRun({ requester: alice }));
    await h.reconciler.reconcile(key);
    h.cluster.failNext.set("write", apiError(409, "the object has been modified"));
    await assert.rejects(
      h.reconciler.reconcile(key),
      (error: { code?: number }) => error.code === 409,
    );
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Running");
  });

  it("never starts a run in its own namespace, and says so once", async () => {
    h = harness({ operatorNamespace: "agents" });
    h.cluster.runs.put(testRun({ requester: alice }));
    await h.reconciler.reconcile(key);
    await h.reconciler.reconcile(key);
    assert.equal(h.run()?.status, undefined);
    assert.equal(jobOf(h), undefined);
    assert.deepEqual(
      h.cluster.events.map((e) => `${e.type} ${e.reason}`),
      ["Warning NotReconciled"],
    );
  });

  describe("with the platform's ClusterConnection", () => {
    const platformDb = clusterConnection(postgresConnection(), {
      matchLabels: { team: "ml" },
    });
    beforeEach(() => {
      const own = h.cluster.connections.get("agents", "kb-postgres");
      if (own) h.cluster.connections.remove(own);
      h.cluster.clusterConnections.put(platformDb);
      h.cluster.namespaces.put({ metadata: { name: "agents", labels: { team: "ml" } } });
    });

    it("starts a run of a namespace it is offered to, and revokes through it", async () => {
      await runningRun(h);
      const env = jobOf(h)?.spec?.template.spec?.containers[0]?.env ?? [];
      assert.ok(
        env.some((e) => e.name === "LGJIT_KB_POSTGRES_URL"),
        "the graph is given its URL",
      );
      finishJob(h, "Complete");
      await settle(h);
      assert.deepEqual(h.revoked, ["r:kb-postgres"]);
    });

    it("denies a run of a namespace the selector leaves out", async () => {
      h.cluster.namespaces.put({ metadata: { name: "agents", labels: { team: "ops" } } });
      h.cluster.runs.put(testRun({ requester: alice }));
      await settle(h);
      assert.equal(h.run()?.status?.phase, "Denied");
      assert.equal(condition(h.run(), "Authorized")?.reason, "ConnectionNotFound");
      assert.equal(jobOf(h), undefined);
    });

    it("denies a name the namespace's own Connection shadows", async () => {
      h.cluster.connections.put(connection());
      h.cluster.runs.put(testRun({ requester: alice }));
      await settle(h);
      assert.equal(h.run()?.status?.phase, "Denied");
      assert.equal(condition(h.run(), "Authorized")?.reason, "ConnectionAmbiguous");
    });

    it("fails a run whose namespace loses the label before its Job, revoking on the ClusterConnection", async () => {
      h.cluster.runs.put(testRun({ requester: alice }));
      await h.reconciler.reconcile(key); // finalizer
      await h.reconciler.reconcile(key); // Running, deadline fixed
      assert.equal(h.run()?.status?.phase, "Running");
      h.cluster.namespaces.put({ metadata: { name: "agents", labels: {} } });
      await settle(h);
      assert.equal(h.run()?.status?.phase, "Failed");
      assert.match(condition(h.run(), "Complete")?.message ?? "", /grant no longer holds/);
      assert.deepEqual(h.revoked, ["r:kb-postgres"]);
    });
  });

  describe("awaiting approval", () => {
    const bob = { username: "bob@example.com", uid: "b-1", groups: ["security"] };
    const carol = { username: "carol@example.com", uid: "c-1", groups: ["security"] };
    let seq = 0;

    function approve(
      approver: Requester,
      decision: "Approve" | "Deny" = "Approve",
      runUid = "uid-r",
    ): void {
      seq++;
      h.cluster.approvals.put({
        apiVersion: "langgraph-jit.dev/v1alpha1",
        kind: "Approval",
        metadata: {
          name: `r-${seq}`,
          namespace: "agents",
          creationTimestamp: new Date(h.clock.now.getTime() + seq),
          annotations: {
            [annotations.approver]: JSON.stringify(approver),
            [annotations.runUid]: runUid,
          },
        },
        spec: { run: "r", decision, reason: `reason ${seq}` },
      });
    }

    async function waiting(approvals = 1): Promise<void> {
      h.cluster.policies.put(
        policy({
          runApproval: {
            approvers: [{ kind: "Group", name: "security" }],
            approvals,
            timeout: "1h",
          },
        }),
      );
      h.cluster.runs.put(testRun({ requester: alice }));
      await settle(h);
      assert.equal(h.run()?.status?.phase, "AwaitingApproval");
      assert.equal(h.run()?.status?.approval?.expiresAt, "2026-12-05T11:00:00Z");
      assert.deepEqual(h.cluster.notices.at(-1), {
        policies: ["ml-platform"],
        notice: {
          state: "Waiting",
          namespace: "agents",
          kind: "LangGraphRun",
          name: "r",
          run: "r",
          requester: alice.username,
          request: `${h.run()?.spec.reason || "no reason given"} (${h
            .run()
            ?.spec.access.map((a) => `${a.connection}: ${a.actions.join(", ")}`)
            .join("; ")})`,
          message: `waiting for ${approvals} of Group security`,
        },
      });
    }

    /** The states the policy's webhook was told, in order. */
    const told = () => h.cluster.notices.map(({ notice }) => notice.state);

    it("starts the run once an approver approves, its deadline counted from the approval", async () => {
      await waiting();
      h.clock.now = new Date(start.getTime() + 20 * 60_000);
      approve(bob);
      await settle(h);
      const run = h.run();
      assert.equal(run?.status?.phase, "Running");
      assert.equal(run?.status?.startedAt, "2026-12-05T10:20:00Z");
      assert.equal(run?.status?.deadline, "2026-12-05T10:50:00Z");
      assert.equal(condition(run, "Approved")?.status, "True");
      assert.match(
        condition(run, "Approved")?.message ?? "",
        /approved by bob@example.com \(reason \d+\)/,
      );
      assert.deepEqual(
        run?.status?.approval?.decisions?.map((d) => `${d.approver} ${d.decision}`),
        ["bob@example.com Approve"],
      );
      assert.ok(jobOf(h), "the Job is made after the approval");
      assert.deepEqual(told(), ["Waiting", "Approved"]);
      assert.deepEqual(h.cluster.sessionApprovals, [
        {
          run: "uid-r",
          approval: { decision: "Approved", message: condition(run, "Approved")?.message },
        },
      ]);
      assert.match(h.cluster.notices[1]?.notice.message ?? "", /^approved by bob@example.com/);
      assert.ok(h.cluster.events.some((e) => e.reason === "Approved"));
      assert.deepEqual(
        h.cluster.events.filter((e) => e.reason === "ApprovalDecided").map((e) => e.note),
        [`bob@example.com approved (Approval r-${seq}): reason ${seq}`],
        "one Event per decision",
      );
    });

    it("counts neither the requester, nor anyone the policy does not name, nor another run's approvals", async () => {
      await waiting();
      approve(alice);
      approve({ username: "mallory@example.com", groups: [] });
      approve(bob, "Approve", "uid-of-an-earlier-run-named-r");
      await settle(h);
      assert.equal(h.run()?.status?.phase, "AwaitingApproval");
      assert.deepEqual(h.run()?.status?.approval?.decisions, []);
      assert.equal(jobOf(h), undefined);
      assert.deepEqual(told(), ["Waiting"]);
      assert.deepEqual(h.cluster.sessionApprovals, []);
    });

    it("needs as many distinct approvers as the policy asks, showing those so far", async () => {
      await waiting(2);
      approve(bob);
      approve(bob);
      await settle(h);
      assert.equal(h.run()?.status?.phase, "AwaitingApproval");
      assert.equal(h.run()?.status?.approval?.decisions?.length, 1, "bob counts once");
      assert.match(condition(h.run(), "Approved")?.message ?? "", /1 more of Group security/);
      approve(carol);
      await settle(h);
      assert.equal(h.run()?.status?.phase, "Running");
    });

    it("is Denied by one Deny, whatever else was approved", async () => {
      await waiting(2);
      approve(bob);
      approve(carol, "Deny");
      await settle(h);
      assert.equal(h.run()?.status?.phase, "Denied");
      assert.equal(condition(h.run(), "Authorized")?.reason, "ApprovalDenied");
      assert.match(
        condition(h.run(), "Approved")?.message ?? "",
        /^denied by carol@example.com: reason \d+$/,
      );
      assert.equal(jobOf(h), undefined);
      assert.deepEqual(told(), ["Waiting", "Denied"]);
      assert.deepEqual(
        h.cluster.sessionApprovals.map(({ approval }) => approval.decision),
        ["Denied"],
        "the session says who stopped a run that never had a sidecar",
      );
    });

    it("is Denied with ApprovalExpired when nobody decides in time", async () => {
      await waiting();
      h.clock.now = new Date(start.getTime() + 59 * 60_000);
      assert.deepEqual(await h.reconciler.reconcile(key), { requeueAfterMs: 60_000 });
      h.clock.now = new Date(start.getTime() + 60 * 60_000);
      await settle(h);
      assert.equal(h.run()?.status?.phase, "Denied");
      assert.equal(condition(h.run(), "Approved")?.reason, "ApprovalExpired");
      approve(bob);
      await settle(h);
      assert.equal(h.run()?.status?.phase, "Denied", "a late approval starts nothing");
      assert.equal(jobOf(h), undefined);
      assert.deepEqual(told(), ["Waiting", "Expired"]);
      assert.deepEqual(
        h.cluster.sessionApprovals.map(({ approval }) => approval.decision),
        ["Expired"],
      );
    });
  });
});

describe("a tagged pod's run", () => {
  const account: Requester = {
    username: "system:serviceaccount:agents:kb-server",
    uid: "",
    groups: ["system:serviceaccounts", "system:serviceaccounts:agents", "system:authenticated"],
  };
  let h: Harness;

  function podRun(): LangGraphRun {
    const { template: _none, ...spec } = testRun({ requester: account }).spec;
    return {
      ...testRun({ requester: account }),
      spec: {
        ...spec,
        maxDuration: "20m",
        source: { pod: "r", uid: "pod-1", owner: "ReplicaSet/kb" },
      },
    };
  }
  /** The pod as the webhook injected it. */
  function pod(phase = "Running"): V1Pod {
    return {
      metadata: {
        name: "r",
        namespace: "agents",
        uid: "pod-1",
        labels: { "langgraph-jit.dev/inject": "true" },
      },
      spec: withSidecar(
        { serviceAccountName: "kb-server", containers: [{ name: "graph", image: "g" }] },
        runIdentityEnv(undefined),
        [connection()],
        { ...h.deps.sidecar, operatorCaPem: h.deps.operatorCaPem() },
      ),
      status: { phase },
    };
  }
  beforeEach(() => {
    h = harness();
    h.cluster.policies.put(
      policy({ subjects: [{ kind: "ServiceAccount", name: "kb-server" }], maxDuration: "30m" }),
    );
    h.cluster.taggedPods.put(pod());
    h.cluster.runs.put(podRun());
  });

  it("runs with no Job while its pod runs, its deadline one credential's life ahead", async () => {
    await settle(h);
    const run = h.run();
    assert.equal(run?.status?.phase, "Running");
    assert.equal(jobOf(h), undefined, "the pod is the workload");
    assert.equal(run?.status?.deadline, "2026-12-05T10:20:00Z");
    assert.equal(condition(run, "Ready")?.reason, "PodRunning");
    assert.deepEqual(h.accountsEnsured, [], "the pod keeps its own account");
    const policy = h.cluster.networkPolicies.list("agents")[0];
    assert.deepEqual(
      policy?.spec?.policyTypes,
      ["Egress"],
      "a service others call, whose egress is the sidecar's",
    );
    assert.deepEqual(policy?.spec?.podSelector, { matchLabels: { "langgraph-jit.dev/run": "r" } });
    assert.equal(
      h.cluster.taggedPods.get("agents", "r")?.metadata?.labels?.["langgraph-jit.dev/run"],
      "r",
      "the pod is labelled into it",
    );
  });

  it("cuts the pod off, revoked, once it is no longer as injected", async () => {
    await settle(h);
    const running = h.cluster.taggedPods.get("agents", "r") as V1Pod;
    h.cluster.taggedPods.put({
      ...running,
      spec: {
        ...(running.spec as V1PodSpec),
        ephemeralContainers: [
          { name: "debug", image: "busybox", targetContainerName: "langgraph-jit-sidecar" },
        ],
      },
    });
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Failed");
    assert.equal(condition(h.run(), "Complete")?.reason, "PodAltered");
    assert.deepEqual(h.revoked, ["r:kb-postgres"]);
  });

  it("rolls its deadline forward while the policy grants it", async () => {
    await settle(h);
    h.clock.now = new Date(start.getTime() + 9 * 60_000);
    assert.deepEqual(await h.reconciler.reconcile(key), { requeueAfterMs: 60_000 });
    assert.equal(h.run()?.status?.deadline, "2026-12-05T10:20:00Z", "more than half a life left");
    h.clock.now = new Date(start.getTime() + 10 * 60_000);
    await h.reconciler.reconcile(key);
    assert.equal(h.run()?.status?.deadline, "2026-12-05T10:30:00Z");
    assert.equal(h.run()?.status?.phase, "Running");
    assert.ok(seal.statusIsTrusted(h.run() as LangGraphRun), "the new deadline is sealed");
  });

  it("cuts the pod off as the grant's end, revoked, when its namespace loses the platform's connection", async () => {
    const own = h.cluster.connections.get("agents", "kb-postgres") as Connection;
    h.cluster.connections.remove(own);
    h.cluster.clusterConnections.put(
      clusterConnection(postgresConnection(), { matchLabels: { team: "ml" } }),
    );
    h.cluster.namespaces.put({ metadata: { name: "agents", labels: { team: "ml" } } });
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Running");
    h.cluster.namespaces.put({ metadata: { name: "agents", labels: {} } });
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Failed");
    assert.equal(condition(h.run(), "Complete")?.reason, "ConnectionNotFound");
    assert.deepEqual(h.revoked, ["r:kb-postgres"]);
  });

  it("cuts the pod off, revoked, when the grant is withdrawn", async () => {
    await settle(h);
    const withdrawn = h.cluster.policies.get("agents", "ml-platform") as AccessPolicy;
    h.cluster.policies.put({
      ...withdrawn,
      spec: { ...withdrawn.spec, subjects: [{ kind: "Group", name: "x" }] },
    });
    await settle(h);
    assert.equal(h.run()?.status?.phase, "Failed");
    assert.match(
      condition(h.run(), "Complete")?.message ?? "",
      /^the grant no longer holds, so pod r is cut off/,
    );
    assert.deepEqual(h.revoked, ["r:kb-postgres"]);
    assert.deepEqual(h.order.slice(-2), ["revoke", "status Failed"]);
  });

  it("ends with its pod: Succeeded, Failed, or Cancelled when the pod is gone or replaced", async () => {
    for (const [change, phase] of [
      [() => h.cluster.taggedPods.put(pod("Succeeded")), "Succeeded"],
      [() => h.cluster.taggedPods.put(pod("Failed")), "Failed"],
      [() => h.cluster.taggedPods.remove(pod()), "Cancelled"],
      [
        () => h.cluster.taggedPods.put({ ...pod(), metadata: { ...pod().metadata, uid: "pod-2" } }),
        "Cancelled",
      ],
    ] as const) {
      h = harness();
      h.cluster.policies.put(
        policy({ subjects: [{ kind: "ServiceAccount", name: "kb-server" }], maxDuration: "30m" }),
      );
      h.cluster.taggedPods.put(pod());
      h.cluster.runs.put(podRun());
      await settle(h);
      change();
      await settle(h);
      assert.equal(h.run()?.status?.phase, phase);
      assert.deepEqual(h.revoked, ["r:kb-postgres"], phase);
    }
  });
});
