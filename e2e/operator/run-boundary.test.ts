// A run grants nothing beyond its grant (invariant 8), tried as the real identities on the real
// control plane: a pod template may reach no Secret, ConfigMap, token or ServiceAccount its
// requester could not reach themselves, and no Connection's Secret at all; a run's spec and
// status are beyond anyone's reach but the operator's; the operator re-checks the template before
// it creates the Job and never adopts a Job it did not make.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  EventsV1Api,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  V1MicroTime,
  type V1PodSpec,
} from "@kubernetes/client-node";
import type { LangGraphRun } from "../../api/v1alpha1.ts";
import { apiErrorMessage } from "../../operator/src/kube/api-errors.ts";
import {
  createTestNamespace,
  eventually,
  type Identity,
  kubeConfigFor,
  statusOf,
  type TestNamespace,
} from "../lib/cluster.ts";
import { type OperatorProcess, startOperator } from "../lib/operator.ts";
import {
  createRun,
  customObjects,
  jobsOfRun,
  readRun,
  runManifest,
  setUpRunNamespace,
  waitForPhase,
} from "../lib/runs.ts";

const admin = kubeConfigFor("admin");
const core = admin.makeApiClient(CoreV1Api);
const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
const eventsApi = admin.makeApiClient(EventsV1Api);
const runsApi = { group: "langgraph-jit.dev", version: "v1alpha1", plural: "langgraphruns" };

/** A run of alice's whose pod spec is the default one changed by `pod`. */
function runWith(name: string, pod: Partial<V1PodSpec>): LangGraphRun {
  const run = runManifest(name);
  assert.ok(run.spec.template);
  run.spec.template.spec = {
    containers: [{ name: "graph", image: "example.invalid/kb-graph:1.4" }],
    // Kept off the node: these pods are never meant to start.
    nodeSelector: { "langgraph-jit.dev/e2e": "no-such-node" },
    ...pod,
  };
  return run;
}

/** The status and message of an API call that must fail. */
async function refused(call: Promise<unknown>): Promise<{ status?: number; message: string }> {
  try {
    await call;
  } catch (error) {
    return { status: statusOf(error), message: apiErrorMessage(error) };
  }
  assert.fail("the API server accepted it");
}

describe("the run's boundary, as its requester", () => {
  let system: TestNamespace;
  let ns: TestNamespace;
  let operator: OperatorProcess;
  let release: () => Promise<void>;

  before(async () => {
    system = await createTestNamespace("lgjit-system");
    ns = await createTestNamespace("boundary");
    // Another replica holds the Lease: this operator admits runs but reconciles none until the
    // test lets it, so what happens before a Job exists can be arranged.
    const leases = admin.makeApiClient(CoordinationV1Api);
    await leases.createNamespacedLease({
      namespace: system.name,
      body: {
        metadata: { name: "langgraph-jit-operator" },
        spec: {
          holderIdentity: "another-replica",
          leaseDurationSeconds: 3600,
          renewTime: new V1MicroTime(),
        },
      },
    });
    release = async () => {
      await leases.deleteNamespacedLease({
        namespace: system.name,
        name: "langgraph-jit-operator",
      });
    };
    operator = await startOperator(system.name);
    await setUpRunNamespace(ns.name, {
      grants: [
        { connection: "kb-postgres", actions: ["read", "write"] },
        { connection: "kb-api", actions: ["read"] },
      ],
    });
    await core.createNamespacedSecret({
      namespace: ns.name,
      body: { metadata: { name: "kb-admin" }, stringData: { username: "kb", password: "pw" } },
    });
    await core.createNamespacedSecret({
      namespace: ns.name,
      body: { metadata: { name: "payroll" }, stringData: { token: "s3cr3t" } },
    });
    await core.createNamespacedConfigMap({
      namespace: ns.name,
      body: { metadata: { name: "graph-settings" }, data: { mode: "full" } },
    });
    // alice may read the ConfigMap graph-settings, and nothing else of the namespace's.
    await rbac.createNamespacedRole({
      namespace: ns.name,
      body: {
        metadata: { name: "graph-settings-reader" },
        rules: [
          {
            apiGroups: [""],
            resources: ["configmaps"],
            resourceNames: ["graph-settings"],
            verbs: ["get"],
          },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns.name,
      body: {
        metadata: { name: "alice-reads-graph-settings" },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "Role",
          name: "graph-settings-reader",
        },
        subjects: [
          { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "alice@example.com" },
        ],
      },
    });
    // An account that may edit the namespace: naming it in a template must not lend its rights.
    await core.createNamespacedServiceAccount({
      namespace: ns.name,
      body: { metadata: { name: "editor" } },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns.name,
      body: {
        metadata: { name: "editor-edits" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "edit" },
        subjects: [{ kind: "ServiceAccount", name: "editor", namespace: ns.name }],
      },
    });
  });

  after(async () => {
    await release?.().catch(() => undefined);
    await ns?.remove();
    await operator?.remove();
    await system?.remove();
  });

  describe("is refused at apply, naming the field, with nothing created", () => {
    const cases: [string, Identity, Partial<V1PodSpec>, RegExp][] = [
      [
        "the Postgres admin password, taken from the Connection's Secret",
        "alice",
        {
          containers: [
            {
              name: "graph",
              image: "g",
              env: [
                { name: "PW", valueFrom: { secretKeyRef: { name: "kb-admin", key: "password" } } },
              ],
            },
          ],
        },
        /spec\.template\.spec\.containers\[0\]\.env\[0\]\.valueFrom\.secretKeyRef: Secret "kb-admin" holds the credentials of Connection "kb-postgres", which only langgraph-jit may read/,
      ],
      [
        "the Connection's Secret, even to an administrator",
        "admin",
        { volumes: [{ name: "creds", secret: { secretName: "kb-admin" } }] },
        /spec\.template\.spec\.volumes\[0\]\.secret: Secret "kb-admin" holds the credentials of Connection "kb-postgres"/,
      ],
      [
        "a Secret alice may not read, mounted as a volume",
        "alice",
        { volumes: [{ name: "payroll", secret: { secretName: "payroll" } }] },
        /spec\.template\.spec\.volumes\[0\]\.secret: alice@example\.com may not get secrets "payroll" in namespace "boundary-[0-9a-f]+", so the run's pod may not either/,
      ],
      [
        "the same Secret through envFrom, as mallory",
        "mallory",
        {
          containers: [
            { name: "graph", image: "g", envFrom: [{ secretRef: { name: "payroll" } }] },
          ],
        },
        /envFrom\[0\]\.secretRef: mallory@example\.com may not get secrets "payroll"/,
      ],
      [
        "a ServiceAccount bound to edit",
        "alice",
        { serviceAccountName: "editor" },
        /spec\.template\.spec\.serviceAccountName: a run's pod runs as the ServiceAccount its AccessPolicy names \(default langgraph-jit-run\), not "editor"/,
      ],
      [
        "a projected token of the default audience",
        "alice",
        {
          volumes: [
            { name: "kube", projected: { sources: [{ serviceAccountToken: { path: "token" } }] } },
          ],
        },
        /projected\.sources\[0\]\.serviceAccountToken: a run's pod holds no Kubernetes API credential/,
      ],
      [
        "the pod's own API token",
        "bob",
        { automountServiceAccountToken: true },
        /spec\.template\.spec\.automountServiceAccountToken: a run's pod holds no Kubernetes API credential/,
      ],
      [
        "an http Connection's host mapped to the pod itself",
        "alice",
        { hostAliases: [{ ip: "127.0.0.1", hostnames: ["kb-api.example.invalid"] }] },
        /spec\.template\.spec\.hostAliases: would change where the sidecar's connections go/,
      ],
      [
        "the node's file system",
        "alice",
        { volumes: [{ name: "root", hostPath: { path: "/" } }] },
        /spec\.template\.spec\.volumes\[0\]\.hostPath: hostPath volumes are not allowed/,
      ],
      [
        "a privileged container",
        "alice",
        { containers: [{ name: "graph", image: "g", securityContext: { privileged: true } }] },
        /containers\[0\]\.securityContext\.privileged: would let the graph reach around its sidecar/,
      ],
    ];
    for (const [what, identity, pod, message] of cases) {
      it(`${what} (${identity})`, async () => {
        const name = `refused-${what.replace(/[^a-z]+/gi, "-").toLowerCase()}`
          .slice(0, 60)
          .replace(/-+$/, "");
        const answer = await refused(createRun(identity, ns.name, runWith(name, pod)));
        assert.equal(answer.status, 422, answer.message);
        assert.match(answer.message, message);
        assert.equal(await readRun(ns.name, name), undefined);
      });
    }
  });

  it("admits what the requester may read: alice's ConfigMap", async () => {
    await createRun(
      "alice",
      ns.name,
      runWith("settings", { volumes: [{ name: "s", configMap: { name: "graph-settings" } }] }),
    );
    assert.ok(await readRun(ns.name, "settings"));
  });

  it("keeps a run's spec as it was created, whoever asks", async () => {
    await createRun("alice", ns.name, runWith("fixed", {}));
    for (const identity of ["alice", "mallory"] as const) {
      const answer = await refused(
        customObjects(identity).patchNamespacedCustomObject(
          {
            ...runsApi,
            namespace: ns.name,
            name: "fixed",
            body: {
              spec: { access: [{ connection: "kb-postgres", actions: ["read", "write", "ddl"] }] },
            },
          },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        ),
      );
      assert.equal(answer.status, 403);
      assert.match(answer.message, /spec\.access: a run's spec cannot change once it is created/);
    }
  });

  it("lets nobody but the operator write a run's status", async () => {
    // bob's team is given the status subresource by RBAC: the webhook still refuses him.
    await rbac.createNamespacedRole({
      namespace: ns.name,
      body: {
        metadata: { name: "run-status-writer" },
        rules: [
          {
            apiGroups: ["langgraph-jit.dev"],
            resources: ["langgraphruns/status"],
            verbs: ["patch", "update"],
          },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns.name,
      body: {
        metadata: { name: "security-writes-run-status" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "run-status-writer" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "security" }],
      },
    });
    const far = new Date(Date.now() + 7 * 24 * 3600_000).toISOString().slice(0, 19);
    const answer = await eventually("the RBAC to apply and the webhook to refuse", async () => {
      const result = await refused(
        customObjects("bob").patchNamespacedCustomObjectStatus(
          {
            ...runsApi,
            namespace: ns.name,
            name: "fixed",
            body: { status: { phase: "Running", deadline: `${far}Z` } },
          },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        ),
      );
      return result.message.includes("written by langgraph-jit") ? result : undefined;
    });
    assert.equal(answer.status, 403);
    assert.match(
      answer.message,
      /status of LangGraphRun boundary-[0-9a-f]+\/fixed is written by langgraph-jit \(admin\) alone, not by bob@example\.com/,
    );
    assert.equal((await readRun(ns.name, "fixed"))?.status, undefined);
  });

  describe("once reconciled", () => {
    before(async () => {
      // While nothing reconciles: alice loses the ConfigMap, and a Job of someone else's is
      // waiting under the name the operator would give the run's Job.
      await createRun("alice", ns.name, runWith("preempted", {}));
      const preempted = await readRun(ns.name, "preempted");
      await admin.makeApiClient(BatchV1Api).createNamespacedJob({
        namespace: ns.name,
        body: {
          metadata: {
            name: "preempted",
            ownerReferences: [
              {
                apiVersion: "langgraph-jit.dev/v1alpha1",
                kind: "LangGraphRun",
                name: "preempted",
                uid: preempted?.metadata?.uid ?? "",
                controller: true,
              },
            ],
          },
          spec: {
            backoffLimit: 0,
            template: {
              spec: {
                restartPolicy: "Never",
                nodeSelector: { "langgraph-jit.dev/e2e": "no-such-node" },
                containers: [{ name: "graph", image: "example.invalid/evil:1" }],
              },
            },
          },
        },
      });
      await rbac.deleteNamespacedRoleBinding({
        namespace: ns.name,
        name: "alice-reads-graph-settings",
      });
      // mallory's run, which no policy grants, set Running with a week-long deadline by the one
      // identity the status webhook lets through here (the test operator runs as admin): the
      // operator trusts no phase it did not seal.
      await createRun("mallory", ns.name, runWith("forged-status", {}));
      const now = new Date();
      const week = new Date(now.getTime() + 7 * 24 * 3600_000);
      await customObjects("admin").patchNamespacedCustomObjectStatus(
        {
          ...runsApi,
          namespace: ns.name,
          name: "forged-status",
          body: {
            status: {
              phase: "Running",
              startedAt: `${now.toISOString().slice(0, 19)}Z`,
              deadline: `${week.toISOString().slice(0, 19)}Z`,
            },
          },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
      await release();
    });

    it("checks the template again as the requester: what she can no longer read is refused", async () => {
      const run = await waitForPhase(ns.name, "settings", "Denied", 60_000);
      const authorized = run.status?.conditions?.find((c) => c.type === "Authorized");
      assert.equal(authorized?.reason, "TemplateRefused");
      assert.match(
        authorized?.message ?? "",
        /spec\.template\.spec\.volumes\[0\]\.configMap: alice@example\.com may not get configmaps "graph-settings"/,
      );
      assert.deepEqual(await jobsOfRun(ns.name, "settings"), []);
    });

    it("never adopts a Job it did not create under the run's name", async () => {
      const run = await waitForPhase(ns.name, "preempted", "Failed", 60_000);
      const complete = run.status?.conditions?.find((c) => c.type === "Complete");
      assert.equal(complete?.reason, "JobConflict");
      assert.match(
        complete?.message ?? "",
        /Job preempted exists and was not created by langgraph-jit for this run/,
      );
      assert.equal(run.status?.credential?.issuedAt, undefined);
      assert.equal(run.status?.jobUID, undefined);
    });

    it("trusts no Running it did not seal: a hand-set phase and deadline start nothing", async () => {
      const run = await waitForPhase(ns.name, "forged-status", "Failed", 60_000);
      const complete = run.status?.conditions?.find((c) => c.type === "Complete");
      assert.equal(complete?.reason, "StatusNotSealed");
      assert.match(complete?.message ?? "", /phase Running was not set by langgraph-jit/);
      assert.deepEqual(await jobsOfRun(ns.name, "forged-status"), []);
      assert.equal(run.status?.credential?.issuedAt, undefined);
    });

    it("runs the pod as langgraph-jit-run, bound to nothing, with no API token", async () => {
      const run = await waitForPhase(ns.name, "fixed", "Running", 60_000);
      assert.ok(run.status?.jobUID && run.status.seal);
      const [job] = await eventually("the run's Job", async () => {
        const jobs = await jobsOfRun(ns.name, "fixed");
        return jobs.length ? jobs : undefined;
      });
      const pod = job?.spec?.template.spec;
      assert.equal(pod?.serviceAccountName, "langgraph-jit-run");
      assert.equal(pod?.automountServiceAccountToken, false);
      assert.equal(job?.metadata?.uid, run.status?.jobUID);
      const account = await core.readNamespacedServiceAccount({
        namespace: ns.name,
        name: "langgraph-jit-run",
      });
      assert.equal(account.automountServiceAccountToken, false);
      const bindings = await rbac.listNamespacedRoleBinding({ namespace: ns.name });
      assert.ok(
        !bindings.items.some((b) => b.subjects?.some((s) => s.name === "langgraph-jit-run")),
        "something is bound to langgraph-jit-run",
      );
    });

    it("refuses ephemeral containers in a run's pod", async () => {
      const pod = await eventually("the run's pod", async () => {
        const pods = await core.listNamespacedPod({
          namespace: ns.name,
          labelSelector: "langgraph-jit.dev/run=fixed",
        });
        return pods.items[0];
      });
      const answer = await refused(
        core.patchNamespacedPodEphemeralcontainers(
          {
            namespace: ns.name,
            name: pod.metadata?.name ?? "",
            body: {
              spec: {
                ephemeralContainers: [
                  { name: "debug", image: "busybox", targetContainerName: "langgraph-jit-sidecar" },
                ],
              },
            },
          },
          setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
        ),
      );
      assert.equal(answer.status, 403);
      assert.match(
        answer.message,
        /belongs to a LangGraphRun: its pod takes no ephemeral containers/,
      );
    });

    it("never starts a run in its own namespace, where no webhook stamps the requester", async () => {
      const forged = runWith("inside", {});
      forged.metadata = {
        name: "inside",
        annotations: {
          "langgraph-jit.dev/requester": JSON.stringify({
            username: "alice@example.com",
            groups: ["ml-platform"],
          }),
        },
      };
      await createRun("admin", system.name, forged);
      await eventually("a NotReconciled event", async () => {
        const events = await eventsApi.listNamespacedEvent({
          namespace: system.name,
          fieldSelector: "regarding.name=inside",
        });
        return events.items.some((e) => e.reason === "NotReconciled");
      });
      assert.equal((await readRun(system.name, "inside"))?.status, undefined);
      assert.deepEqual(await jobsOfRun(system.name, "inside"), []);
    });
  });
});
