// The run lifecycle on the real control plane, acting as the real test identities.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BatchV1Api,
  CoreV1Api,
  EventsV1Api,
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { eventually, expectApiError, kubeConfigFor, statusOf } from "../lib/cluster.ts";
import { useOperator } from "../lib/operator.ts";
import {
  createRun,
  customObjects,
  jobsOfRun,
  readRun,
  runManifest,
  waitForPhase,
} from "../lib/runs.ts";

const admin = kubeConfigFor("admin");
const core = admin.makeApiClient(CoreV1Api);
const batch = admin.makeApiClient(BatchV1Api);
const networking = admin.makeApiClient(NetworkingV1Api);
const eventsApi = admin.makeApiClient(EventsV1Api);

describe("LangGraphRun lifecycle", () => {
  const suite = useOperator("agents", { runs: true });

  it("runs alice's allowed run in a Job with the native sidecar, the projected token and loopback env", async () => {
    await createRun("alice", suite.ns.name, runManifest("alice-run"));
    const run = await waitForPhase(suite.ns.name, "alice-run", "Running");
    assert.equal(run.status?.requester?.username, "alice@example.com");
    assert.deepEqual(run.status?.requester?.groups?.includes("ml-platform"), true);
    assert.ok(run.status?.deadline && run.status.startedAt);
    assert.equal(run.metadata?.finalizers?.includes("langgraph-jit.dev/revoke"), true);
    assert.equal(run.status?.conditions?.find((c) => c.type === "Authorized")?.status, "True");

    const [job] = await eventually("the run's Job", async () => {
      const jobs = await jobsOfRun(suite.ns.name, "alice-run");
      return jobs.length > 0 ? jobs : undefined;
    });
    assert.equal(job?.metadata?.ownerReferences?.[0]?.uid, run.metadata?.uid);
    const pod = job?.spec?.template.spec;
    const sidecar = pod?.initContainers?.[0];
    assert.equal(sidecar?.name, "langgraph-jit-sidecar");
    assert.equal(sidecar?.restartPolicy, "Always");
    assert.equal(sidecar?.startupProbe?.httpGet?.path, "/ready");
    const token = pod?.volumes?.find((v) => v.projected)?.projected?.sources?.[0]
      ?.serviceAccountToken;
    assert.equal(token?.audience, "langgraph-jit");
    const env = Object.fromEntries((pod?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    assert.equal(env.LGJIT_KB_POSTGRES_URL, "postgres://run@127.0.0.1:15432/kb");
    assert.equal(env.HTTPS_PROXY, "http://127.0.0.1:15000");
    assert.ok(job?.spec?.activeDeadlineSeconds && job.spec.activeDeadlineSeconds <= 1800);

    const policy = await networking.readNamespacedNetworkPolicy({
      namespace: suite.ns.name,
      name: "alice-run",
    });
    assert.deepEqual(policy.spec?.podSelector?.matchLabels, {
      "langgraph-jit.dev/run": "alice-run",
    });
    const peers = policy.spec?.egress?.flatMap((rule) => rule.to ?? []) ?? [];
    assert.ok(peers.some((p) => p.podSelector?.matchLabels?.app === "kb-db"));
  });

  it("denies mallory's run, naming the missing grant, and creates no Job", async () => {
    await createRun("mallory", suite.ns.name, runManifest("mallory-run"));
    const run = await waitForPhase(suite.ns.name, "mallory-run", "Denied");
    const authorized = run.status?.conditions?.find((c) => c.type === "Authorized");
    assert.equal(authorized?.status, "False");
    assert.equal(authorized?.reason, "NotGranted");
    assert.match(
      authorized?.message ?? "",
      /grants "read" and "write" on connection "kb-postgres" to mallory@example.com/,
    );
    assert.deepEqual(await jobsOfRun(suite.ns.name, "mallory-run"), []);
    const events = await eventsApi.listNamespacedEvent({
      namespace: suite.ns.name,
      fieldSelector: "regarding.name=mallory-run",
    });
    assert.ok(events.items.some((e) => e.reason === "Denied" && e.type === "Warning"));
  });

  it("rejects a run that sets the requester annotation itself", async () => {
    const forged = runManifest("forged-run");
    forged.metadata = {
      name: "forged-run",
      annotations: {
        "langgraph-jit.dev/requester": JSON.stringify({
          username: "alice@example.com",
          groups: ["ml-platform"],
        }),
      },
    };
    const status = await expectApiError(createRun("mallory", suite.ns.name, forged));
    assert.equal(status, 403);
    assert.equal(await readRun(suite.ns.name, "forged-run"), undefined);
  });

  it("rejects changing spec.access once the run has started", async () => {
    await waitForPhase(suite.ns.name, "alice-run", "Running");
    const change = customObjects("alice").patchNamespacedCustomObject(
      {
        group: "langgraph-jit.dev",
        version: "v1alpha1",
        namespace: suite.ns.name,
        plural: "langgraphruns",
        name: "alice-run",
        body: [{ op: "replace", path: "/spec/access/0/actions", value: ["read"] }],
      },
      setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
    );
    assert.equal(await expectApiError(change), 403);
  });

  it("denies a maxDuration longer than the policy allows", async () => {
    await createRun("alice", suite.ns.name, runManifest("long-run", { maxDuration: "2h" }));
    const run = await waitForPhase(suite.ns.name, "long-run", "Denied");
    const authorized = run.status?.conditions?.find((c) => c.type === "Authorized");
    assert.equal(authorized?.reason, "DurationExceeded");
    assert.match(authorized?.message ?? "", /maxDuration 2h exceeds the 1h/);
  });

  for (const [podPhase, runPhase] of [
    ["Succeeded", "Succeeded"],
    ["Failed", "Failed"],
  ] as const) {
    it(`carries a pod marked ${podPhase} through the Job to a ${runPhase} run`, async () => {
      const name = `finish-${podPhase.toLowerCase()}`;
      // Kept off the node: the test plays the kubelet, and a real one would race it.
      const manifest = runManifest(name);
      assert.ok(manifest.spec.template);
      manifest.spec.template.spec = {
        ...manifest.spec.template?.spec,
        containers: manifest.spec.template?.spec?.containers ?? [],
        nodeSelector: { "langgraph-jit.dev/e2e": "no-such-node" },
      };
      await createRun("alice", suite.ns.name, manifest);
      await waitForPhase(suite.ns.name, name, "Running");
      const pod = await eventually("the Job's pod", async () => {
        const pods = await core.listNamespacedPod({
          namespace: suite.ns.name,
          labelSelector: `langgraph-jit.dev/run=${name}`,
        });
        return pods.items[0];
      });
      // As a kubelet would report it, through the status subresource; a merge patch, since the
      // scheduler writes this pending pod's conditions meanwhile.
      await core.patchNamespacedPodStatus(
        {
          namespace: suite.ns.name,
          name: pod.metadata?.name ?? "",
          body: { status: { phase: podPhase } },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
      const run = await waitForPhase(suite.ns.name, name, runPhase);
      assert.ok(run.status?.completedAt);
      assert.ok(run.status?.credential?.revokedAt, "credentials revoked when the run finished");
      assert.equal(run.status?.conditions?.find((c) => c.type === "Complete")?.status, "True");
    });
  }

  it("expires a run that outlives its maxDuration and removes its Job", async () => {
    await createRun("alice", suite.ns.name, runManifest("short-run", { maxDuration: "3s" }));
    const run = await waitForPhase(suite.ns.name, "short-run", "Expired", 20_000);
    assert.equal(
      run.status?.conditions?.find((c) => c.type === "Complete")?.reason,
      "DeadlineExceeded",
    );
    await eventually("the expired run's Job to be gone", async () => {
      const jobs = await jobsOfRun(suite.ns.name, "short-run");
      return jobs.every((j) => j.metadata?.deletionTimestamp);
    });
  });

  it("revokes and removes Job and NetworkPolicy when an active run is deleted", async () => {
    await createRun("alice", suite.ns.name, runManifest("deleted-run"));
    await waitForPhase(suite.ns.name, "deleted-run", "Running");
    await eventually(
      "the Job",
      async () => (await jobsOfRun(suite.ns.name, "deleted-run")).length > 0,
    );
    await customObjects("alice").deleteNamespacedCustomObject({
      group: "langgraph-jit.dev",
      version: "v1alpha1",
      namespace: suite.ns.name,
      plural: "langgraphruns",
      name: "deleted-run",
    });
    await eventually("the run to be gone", async () =>
      (await readRun(suite.ns.name, "deleted-run")) ? undefined : true,
    );
    const events = await eventsApi.listNamespacedEvent({
      namespace: suite.ns.name,
      fieldSelector: "regarding.name=deleted-run",
    });
    const reasons = events.items.map((e) => e.reason);
    assert.ok(reasons.includes("Cancelled"), `events: ${reasons.join(", ")}`);
    assert.ok(reasons.includes("CredentialsRevoked"), `events: ${reasons.join(", ")}`);
    await eventually(
      "Job and NetworkPolicy to be gone",
      async () => {
        const jobs = await batch.listNamespacedJob({
          namespace: suite.ns.name,
          labelSelector: "langgraph-jit.dev/run=deleted-run",
        });
        const liveJobs = jobs.items.filter((j) => !j.metadata?.deletionTimestamp);
        const policy = await networking
          .readNamespacedNetworkPolicy({ namespace: suite.ns.name, name: "deleted-run" })
          .catch((error: unknown) => (statusOf(error) === 404 ? undefined : Promise.reject(error)));
        return liveJobs.length === 0 && !policy;
      },
      60_000,
    );
  });

  it("converges with no duplicate Job after the operator is killed mid-way", async () => {
    const names = Array.from({ length: 12 }, (_, i) => `crash-${i}`);
    await Promise.all(names.map((name) => createRun("alice", suite.ns.name, runManifest(name))));
    await suite.operator.kill();
    await suite.operator.restart();
    for (const name of names) await waitForPhase(suite.ns.name, name, "Running");
    for (const name of names) {
      await eventually(
        `${name}'s Job`,
        async () => (await jobsOfRun(suite.ns.name, name)).length > 0,
      );
      assert.equal((await jobsOfRun(suite.ns.name, name)).length, 1, `${name} has exactly one Job`);
    }
  });
});
