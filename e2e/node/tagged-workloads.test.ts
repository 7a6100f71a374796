// Tagged workloads on the real node, with the operator installed by Helm with pod injection on:
// a Deployment's and a Job's pods, labelled and annotated only, get the sidecar, a run each
// (stamped with their ServiceAccount) and a credential each that dies with the pod; untagged
// pods and namespaces are untouched, an ungranted account is refused at admission, and an
// operator outage blocks tagged pods alone. The database is the platform's: a ClusterConnection
// offered to the team's namespace, its Secrets in the operator's, where the team's editors
// read nothing and a namespace the selector leaves out may not grant it.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  RbacAuthorizationV1Api,
  type V1Pod,
  type V1PodTemplateSpec,
} from "@kubernetes/client-node";
import type { LangGraphRun } from "../../api/v1alpha1.ts";
import { apiErrorMessage } from "../../operator/src/kube/api-errors.ts";
import { patchAs } from "../../operator/src/kube/meta.ts";
import {
  createTestNamespace,
  eventually,
  kubeConfigFor,
  kubectlAs,
  statusOf,
  type TestNamespace,
} from "../lib/cluster.ts";
import { installChart, localImages, uninstallChart } from "../lib/helm.ts";
import { type KbDb, startKbDb } from "../lib/kb-db.ts";
import {
  createObject,
  createRun,
  customObjects,
  deleteClusterConnection,
  offerClusterConnection,
  runManifest,
  waitForPhase,
} from "../lib/runs.ts";

const release = "tagged";
const fullName = "tagged-langgraph-jit";
const admin = kubeConfigFor("admin");
const core = admin.makeApiClient(CoreV1Api);
const apps = admin.makeApiClient(AppsV1Api);
const batch = admin.makeApiClient(BatchV1Api);

/** A pod template a platform team tags: a label, an annotation, nothing else of ours. */
function taggedTemplate(
  app: string,
  account: string,
  restartPolicy: "Always" | "Never",
  workSeconds: number,
): V1PodTemplateSpec {
  return {
    metadata: {
      labels: { app, "langgraph-jit.dev/inject": "true" },
      annotations: { "langgraph-jit.dev/access": "kb-postgres=read" },
    },
    spec: {
      // Its own API token stays (kube-api-access): the webhook checks what that token reaches.
      serviceAccountName: account,
      restartPolicy,
      containers: [
        {
          name: "graph",
          image: localImages.graph,
          imagePullPolicy: "Never",
          env: [
            { name: "GRAPH_SQL", value: JSON.stringify(["SELECT title FROM docs ORDER BY id"]) },
            { name: "GRAPH_WORK_SECONDS", value: String(workSeconds) },
          ],
        },
      ],
    },
  };
}

/** Makes the kb-server policy's one subject this ServiceAccount. */
async function grantTo(namespace: string, account: string): Promise<void> {
  await customObjects().patchNamespacedCustomObject(
    {
      group: "langgraph-jit.dev",
      version: "v1alpha1",
      namespace,
      plural: "accesspolicies",
      name: "kb-server",
      body: { spec: { subjects: [{ kind: "ServiceAccount", name: account }] } },
    },
    patchAs.merge,
  );
}

async function runsOf(namespace: string): Promise<LangGraphRun[]> {
  const list = (await customObjects().listNamespacedCustomObject({
    group: "langgraph-jit.dev",
    version: "v1alpha1",
    namespace,
    plural: "langgraphruns",
  })) as { items: LangGraphRun[] };
  return list.items.filter((run) => run.spec.source);
}

async function podsOf(namespace: string, app: string): Promise<V1Pod[]> {
  return (await core.listNamespacedPod({ namespace, labelSelector: `app=${app}` })).items.filter(
    (pod) => !pod.metadata?.deletionTimestamp,
  );
}

const sidecarOf = (pod: V1Pod) =>
  pod.spec?.initContainers?.find((c) => c.name === "langgraph-jit-sidecar");

describe("tagged workloads, on the real node", () => {
  let system: TestNamespace;
  let tagged: TestNamespace;
  let db: KbDb;

  /** The login roles the operator minted on the knowledge base for the kb-server pods. */
  async function runRoles(): Promise<string[]> {
    const kb = await db.server.connect(db.server.adminUser, db.server.adminPassword, "kb");
    try {
      const roles = await kb.query(
        "SELECT rolname FROM pg_roles WHERE rolname LIKE 'lgjit_kb_server%'",
      );
      return roles.rows.map((r) => r.rolname as string).sort();
    } finally {
      await kb.end();
    }
  }

  before(async () => {
    system = await createTestNamespace("tagged-system");
    installChart(release, system.name, ["podInjection.enabled=true"]);
    tagged = await createTestNamespace("tagged");
    await core.patchNamespace(
      {
        name: tagged.name,
        body: { metadata: { labels: { "langgraph-jit.dev/inject": "enabled" } } },
      },
      patchAs.merge,
    );
    // The platform's: its admin login and CA in the operator's namespace, none in the team's.
    db = await startKbDb(tagged.name, system.name);
    await offerClusterConnection(db.connection, [tagged.name]);
    await createObject("admin", tagged.name, "accesspolicies", {
      apiVersion: "langgraph-jit.dev/v1alpha1",
      kind: "AccessPolicy",
      metadata: { name: "kb-server" },
      spec: {
        subjects: [{ kind: "ServiceAccount", name: "kb-server" }],
        maxDuration: "30m",
        grants: [{ connection: "kb-postgres", actions: ["read"] }],
      },
    });
    for (const name of ["kb-server", "nobody"]) {
      await core.createNamespacedServiceAccount({
        namespace: tagged.name,
        body: { metadata: { name } },
      });
    }
  });

  after(async () => {
    await tagged?.remove(120_000);
    await deleteClusterConnection("kb-postgres");
    await db?.stop();
    if (system) uninstallChart(release, system.name);
    await system?.remove(120_000);
  });

  it("gives each replica of a tagged Deployment its own run and credential, revokes one when scaled down, and cuts the other off when its grant goes", async (t) => {
    const ns = tagged.name;
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: "kb-server" },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: "kb-server" } },
          template: taggedTemplate("kb-server", "kb-server", "Always", 600),
        },
      },
    });
    const running = await eventually(
      "a Running run with a credential for each replica",
      async () => {
        const runs = (await runsOf(ns)).filter(
          (r) => r.status?.phase === "Running" && r.status.credential?.issuedAt,
        );
        return runs.length === 2 && runs;
      },
      180_000,
    );
    const pods = await podsOf(ns, "kb-server");
    assert.deepEqual(
      running.map((r) => r.spec.source?.pod).sort(),
      pods.map((p) => p.metadata?.name).sort(),
      "one run per pod, named after it",
    );
    for (const run of running) {
      assert.equal(run.status?.requester?.username, `system:serviceaccount:${ns}:kb-server`);
      assert.match(run.spec.source?.owner ?? "", /^ReplicaSet\/kb-server-/);
      assert.equal(run.metadata?.ownerReferences?.[0]?.kind, "Pod");
    }
    for (const pod of pods) {
      assert.equal(sidecarOf(pod)?.restartPolicy, "Always", "a native sidecar was injected");
      const graphEnv = pod.spec?.containers[0]?.env?.map((e) => e.name) ?? [];
      assert.ok(graphEnv.includes("DATABASE_URL"), "the graph reaches the database through it");
      assert.ok(
        !pod.spec?.containers[0]?.volumeMounts?.some((m) => m.name === "langgraph-jit-token"),
        "the graph never holds the sidecar's token",
      );
    }
    const roles = await runRoles();
    assert.equal(roles.length, 2, `roles: ${roles.join(", ")}`);
    assert.notEqual(roles[0], roles[1]);

    const started = performance.now();
    await apps.patchNamespacedDeploymentScale(
      { namespace: ns, name: "kb-server", body: { spec: { replicas: 1 } } },
      patchAs.merge,
    );
    await eventually(
      "the removed replica's role to be dropped",
      async () => (await runRoles()).length === 1,
      60_000,
    );
    // From the scale-down, through the ReplicaSet's deletion of the pod, to the role dropped.
    const elapsedMs = performance.now() - started;
    t.diagnostic(`revoked in ${elapsedMs.toFixed(0)} ms`);
    assert.ok(elapsedMs < 5_000, `took ${elapsedMs.toFixed(0)} ms`);
    const left = await eventually("one run left", async () => {
      const runs = (await runsOf(ns)).filter((r) => !r.metadata?.deletionTimestamp);
      return runs.length === 1 && runs;
    });
    assert.equal(left[0]?.status?.phase, "Running");

    // The platform team takes the account out of the policy: the running pod is cut off.
    await grantTo(ns, "someone-else");
    const cut = await eventually("the remaining pod to be cut off", async () => {
      const [run] = await runsOf(ns);
      return run?.status?.phase === "Failed" && run;
    });
    assert.match(
      cut.status?.conditions?.find((c) => c.type === "Complete")?.message ?? "",
      /the grant no longer holds, so pod kb-server-[\w-]+ is cut off/,
    );
    assert.ok(cut.status?.credential?.revokedAt);
    assert.deepEqual(await runRoles(), [], "its role is dropped");
    await apps.deleteNamespacedDeployment({ namespace: ns, name: "kb-server" });
    await grantTo(ns, "kb-server");
  });

  it("re-issues a long-lived pod's credential while its policy grants it", async () => {
    const ns = tagged.name;
    const template = taggedTemplate("short-lived", "kb-server", "Always", 0);
    template.metadata = {
      ...template.metadata,
      annotations: {
        ...template.metadata?.annotations,
        "langgraph-jit.dev/max-duration": "1m",
      },
    };
    const graph = template.spec?.containers[0];
    graph?.env?.push({ name: "GRAPH_SERVE_PORT", value: "8080" });
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: "short-lived" },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: "short-lived" } },
          template,
        },
      },
    });
    const first = await eventually(
      "the pod's run to hold a credential",
      async () => {
        const [run] = (await runsOf(ns)).filter((r) =>
          r.spec.source?.pod.startsWith("short-lived-"),
        );
        return run?.status?.credential?.expiresAt ? run : undefined;
      },
      120_000,
    );
    assert.equal(first.spec.maxDuration, "1m", "one credential lives as long as the pod pins it");
    const firstExpiry = Date.parse(first.status?.credential?.expiresAt ?? "");
    // Past the first credential's expiry, the pod still reads the database with a new one.
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, firstExpiry - Date.now()) + 5_000),
    );
    const run = await eventually("the re-issued credential", async () => {
      const [now] = (await runsOf(ns)).filter((r) => r.metadata?.uid === first.metadata?.uid);
      return Date.parse(now?.status?.credential?.expiresAt ?? "") > firstExpiry && now;
    });
    assert.equal(run.status?.phase, "Running");
    const [pod] = await podsOf(ns, "short-lived");
    const answer = await fetch(`http://${pod?.status?.podIP}:8080/invoke`, { method: "POST" });
    const summary = (await answer.json()) as { ok: boolean; queries: { rows?: unknown[] }[] };
    assert.equal(answer.status, 200, JSON.stringify(summary));
    assert.equal(summary.queries[0]?.rows?.length, 2, "the query ran with the new credential");
    await apps.deleteNamespacedDeployment({ namespace: ns, name: "short-lived" });
  });

  it("lets a member of the team with edit exec into the graph, never into the sidecar, and forward no port of the pod", async () => {
    const ns = tagged.name;
    const template = taggedTemplate("debuggable", "kb-server", "Always", 0);
    template.spec?.containers[0]?.env?.push({ name: "GRAPH_SERVE_PORT", value: "8080" });
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: "debuggable" },
        spec: { replicas: 1, selector: { matchLabels: { app: "debuggable" } }, template },
      },
    });
    await admin.makeApiClient(RbacAuthorizationV1Api).createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: "carol-edits" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "edit" },
        subjects: [
          { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "oidc:carol@example.com" },
        ],
      },
    });
    const pod = await eventually(
      "the tagged pod to run",
      async () => {
        const [running] = (await podsOf(ns, "debuggable")).filter((p) =>
          p.status?.containerStatuses?.every((c) => c.ready),
        );
        return running?.metadata?.name;
      },
      120_000,
    );
    const carol = (args: string[], timeoutMs?: number) =>
      kubectlAs("oidc/carol", ["-n", ns, ...args], timeoutMs);

    // edit reads every Secret of the team's namespace: the platform's credentials are not there.
    const secrets = carol(["get", "secrets", "-o", "name"]);
    assert.equal(secrets.status, 0, secrets.stderr);
    assert.doesNotMatch(secrets.stdout, /secret\/kb-(admin|db-ca)\b/);
    const platform = kubectlAs("oidc/carol", ["-n", system.name, "get", "secret", "kb-admin"]);
    assert.equal(platform.status, 1);
    assert.match(platform.stderr, /Forbidden.*cannot get resource "secrets"/);

    const intoGraph = carol(["exec", pod, "-c", "graph", "--", "true"]);
    assert.equal(intoGraph.status, 0, `edit lets carol exec into the graph: ${intoGraph.stderr}`);
    for (const verb of [
      ["exec", pod, "-c", "langgraph-jit-sidecar", "--", "true"],
      ["attach", pod, "-c", "langgraph-jit-sidecar"],
    ]) {
      const refused = carol(verb);
      assert.equal(refused.status, 1, `${verb[0]}: ${refused.stdout}${refused.stderr}`);
      assert.match(
        refused.stderr,
        /admission webhook "sidecar-exec\.langgraph-jit\.dev" denied the request: .*container langgraph-jit-sidecar holds run .*'s credential/,
      );
    }
    // Let through, it would keep forwarding until killed (status null).
    const forward = carol(["port-forward", pod, "15432:15432"], 20_000);
    assert.equal(forward.status, 1, `port-forward: ${forward.stdout}${forward.stderr}`);
    assert.match(
      forward.stderr,
      /pod-port-forward\.langgraph-jit\.dev.*no port of it may be forwarded/,
    );
    await apps.deleteNamespacedDeployment({ namespace: ns, name: "debuggable" });
  });

  it("offers the platform's database only to the namespaces its selector names", async () => {
    const outside = await createTestNamespace("tagged-outside");
    try {
      const policy = createObject("admin", outside.name, "accesspolicies", {
        apiVersion: "langgraph-jit.dev/v1alpha1",
        kind: "AccessPolicy",
        metadata: { name: "self-granted" },
        spec: {
          subjects: [{ kind: "Group", name: "system:authenticated" }],
          maxDuration: "30m",
          grants: [{ connection: "kb-postgres", actions: ["read"] }],
        },
      });
      const refusal = await policy.then(
        () => assert.fail("a policy granted a ClusterConnection its namespace is not offered"),
        (error: unknown) => ({ status: statusOf(error), message: apiErrorMessage(error) }),
      );
      assert.equal(refusal.status, 403, refusal.message);
      assert.match(
        refusal.message,
        new RegExp(
          `admission webhook "accesspolicies\\.langgraph-jit\\.dev" denied the request: spec\\.grants\\[0\\]\\.connection: ClusterConnection "kb-postgres" is not offered to namespace "${outside.name}"`,
        ),
      );
      await createRun(
        "admin",
        outside.name,
        runManifest("stray", { access: [{ connection: "kb-postgres", actions: ["read"] }] }),
      );
      const denied = await waitForPhase(outside.name, "stray", "Denied");
      const authorized = denied.status?.conditions?.find((c) => c.type === "Authorized");
      assert.equal(authorized?.reason, "ConnectionNotFound");
      assert.match(authorized?.message ?? "", /nor a ClusterConnection offered to it/);
    } finally {
      await outside.remove(120_000);
    }
  });

  it("records a tagged Job's pod as a run that ends Succeeded, its credential revoked", async () => {
    const ns = tagged.name;
    await batch.createNamespacedCronJob({
      namespace: ns,
      body: {
        metadata: { name: "nightly" },
        spec: {
          schedule: "0 3 * * *",
          jobTemplate: {
            spec: { backoffLimit: 0, template: taggedTemplate("nightly", "kb-server", "Never", 1) },
          },
        },
      },
    });
    // What `kubectl create job --from=cronjob/nightly` does: the CronJob's Job, now.
    const cronJob = await batch.readNamespacedCronJob({ namespace: ns, name: "nightly" });
    await batch.createNamespacedJob({
      namespace: ns,
      body: {
        metadata: {
          name: "nightly-manual",
          ownerReferences: [
            {
              apiVersion: "batch/v1",
              kind: "CronJob",
              name: "nightly",
              uid: cronJob.metadata?.uid ?? "",
              controller: true,
            },
          ],
        },
        spec: cronJob.spec?.jobTemplate.spec as never,
      },
    });
    const run = await eventually(
      "the Job's pod's run to succeed",
      async () => {
        const [found] = (await runsOf(ns)).filter(
          (r) => r.spec.source?.owner === "Job/nightly-manual",
        );
        return found?.status?.phase === "Succeeded" && found;
      },
      180_000,
    );
    assert.ok(run.status?.credential?.issuedAt, "the pod's sidecar held a credential");
    assert.ok(run.status?.credential?.revokedAt, "and it was revoked when the pod ended");
  });

  it("says why a tagged Deployment's pods are refused in its ReplicaSet's events", async () => {
    const ns = tagged.name;
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: "ungranted" },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: "ungranted" } },
          template: taggedTemplate("ungranted", "nobody", "Always", 600),
        },
      },
    });
    const event = await eventually("the ReplicaSet's FailedCreate event", async () => {
      const events = await core.listNamespacedEvent({ namespace: ns });
      return events.items.find(
        (e) =>
          e.involvedObject.kind === "ReplicaSet" &&
          e.involvedObject.name?.startsWith("ungranted-") &&
          e.reason === "FailedCreate",
      );
    });
    assert.match(event.message ?? "", /NotGranted: .*system:serviceaccount:[\w-]+:nobody/);
    assert.deepEqual(await podsOf(ns, "ungranted"), []);
    await apps.deleteNamespacedDeployment({ namespace: ns, name: "ungranted" });
  });

  it("leaves an untagged pod, and a tagged pod in an untagged namespace, untouched", async () => {
    const plain = await createTestNamespace("untagged");
    try {
      const pod = (name: string, labels: Record<string, string>): V1Pod => ({
        metadata: { name, labels },
        spec: {
          containers: [{ name: "graph", image: localImages.graph, imagePullPolicy: "Never" }],
        },
      });
      const untagged = await core.createNamespacedPod({
        namespace: tagged.name,
        body: pod("untagged", { app: "x" }),
      });
      const elsewhere = await core.createNamespacedPod({
        namespace: plain.name,
        body: pod("elsewhere", { app: "x", "langgraph-jit.dev/inject": "true" }),
      });
      for (const created of [untagged, elsewhere]) {
        assert.equal(sidecarOf(created), undefined, `${created.metadata?.name} was injected`);
        assert.equal(created.spec?.containers.length, 1);
      }
      await core.deleteNamespacedPod({
        namespace: tagged.name,
        name: "untagged",
        gracePeriodSeconds: 0,
      });
    } finally {
      await plain.remove(120_000);
    }
  });

  it("refuses at admission a pod whose ServiceAccount no policy grants, whose account could read a Connection's Secret, or that mounts one", async () => {
    const ns = tagged.name;
    // The team's own Connection keeps its Secret in the namespace, where pods could reach it.
    await createObject("admin", ns, "connections", {
      ...db.connection,
      metadata: { name: "team-db" },
      spec: {
        postgres: {
          ...db.connection.spec.postgres,
          credentials: { secretRef: { name: "team-admin" } },
        },
      },
    });
    const refusal = async (template: V1PodTemplateSpec, code: number) => {
      const error = await core
        .createNamespacedPod({
          namespace: ns,
          body: { ...template, metadata: { ...template.metadata, name: "refused" } } as V1Pod,
        })
        .then(
          () => assert.fail("the pod was admitted"),
          (e: unknown) => e,
        );
      const { message } = JSON.parse(String((error as { body?: string }).body)) as {
        message: string;
      };
      assert.equal(statusOf(error), code, message);
      return message;
    };
    assert.match(
      await refusal(taggedTemplate("refused", "nobody", "Never", 0), 403),
      /metadata\.annotations\[langgraph-jit\.dev\/access\]: NotGranted: .*system:serviceaccount:[\w-]+:nobody/,
    );
    // An account whose own API token could read a Connection's Secret: the graph would too.
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: ns,
      body: {
        metadata: { name: "secret-reader" },
        rules: [
          {
            apiGroups: [""],
            resources: ["secrets"],
            verbs: ["get"],
            resourceNames: ["team-admin"],
          },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: "secret-reader" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "secret-reader" },
        subjects: [{ kind: "ServiceAccount", name: "kb-server", namespace: ns }],
      },
    });
    try {
      assert.match(
        await eventually("the binding to take effect", async () => {
          const message = await refusal(
            taggedTemplate("refused", "kb-server", "Never", 0),
            403,
          ).catch(() => undefined);
          return message;
        }),
        /ServiceAccount "kb-server" may get Secret "team-admin" of Connection "team-db", so the pod.s graph could reach the credentials/,
      );
    } finally {
      await rbac.deleteNamespacedRoleBinding({ namespace: ns, name: "secret-reader" });
    }
    const mounting = taggedTemplate("refused", "kb-server", "Never", 0);
    mounting.spec = {
      ...mounting.spec,
      volumes: [{ name: "creds", secret: { secretName: "team-admin" } }],
    } as never;
    assert.match(
      await refusal(mounting, 422),
      /Secret "team-admin" holds the credentials of Connection "team-db"/,
    );
    await customObjects().deleteNamespacedCustomObject({
      group: "langgraph-jit.dev",
      version: "v1alpha1",
      namespace: ns,
      plural: "connections",
      name: "team-db",
    });
  });

  it("blocks tagged pods alone while the operator is down", async () => {
    const ns = tagged.name;
    const scale = (replicas: number) =>
      apps.patchNamespacedDeploymentScale(
        { namespace: system.name, name: fullName, body: { spec: { replicas } } },
        patchAs.merge,
      );
    await scale(0);
    try {
      // Past the pods' 30 s grace period: what is tested is the outage, not how fast it began.
      await eventually(
        "the operator's pods to be gone",
        async () => {
          const pods = await core.listNamespacedPod({
            namespace: system.name,
            labelSelector: `app.kubernetes.io/instance=${release}`,
          });
          return pods.items.length === 0;
        },
        45_000,
      );
      const template = taggedTemplate("blocked", "kb-server", "Never", 0);
      const blocked = await core
        .createNamespacedPod({
          namespace: ns,
          body: { ...template, metadata: { ...template.metadata, name: "blocked" } } as V1Pod,
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(blocked, "a tagged pod was admitted without its sidecar");
      const { message } = JSON.parse(String((blocked as { body?: string }).body));
      assert.match(message, /failed calling webhook "pods\.langgraph-jit\.dev"/);
      const other = await core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name: "unaffected", labels: { app: "y" } },
          spec: { containers: [{ name: "c", image: localImages.graph, imagePullPolicy: "Never" }] },
        },
      });
      assert.equal(other.metadata?.name, "unaffected", "every other pod is admitted");
      await core.deleteNamespacedPod({ namespace: ns, name: "unaffected", gracePeriodSeconds: 0 });
    } finally {
      await scale(1);
      await eventually(
        "the operator to be back",
        async () =>
          (await apps.readNamespacedDeployment({ namespace: system.name, name: fullName })).status
            ?.readyReplicas === 1,
        120_000,
      );
    }
  });
});
