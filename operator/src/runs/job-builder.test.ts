import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Connection, LangGraphRun } from "../../../api/v1alpha1.ts";
import { httpConnection, postgresConnection } from "../testing/connections.ts";
import {
  buildJob,
  checkRunPod,
  graphEnvironment,
  sidecarContainerName,
  TemplateRefused,
} from "./job-builder.ts";

const sidecar = {
  image: "langgraph-jit/sidecar:dev",
  imagePullPolicy: "IfNotPresent",
  uid: 17337,
  operatorUrl: "https://langgraph-jit.langgraph-jit.svc:8443",
  operatorCaPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
};

const postgres = postgresConnection();
const api = httpConnection();

function run(
  podSpec: Partial<NonNullable<LangGraphRun["spec"]["template"]["spec"]>> = {},
): LangGraphRun {
  return {
    apiVersion: "langgraph-jit.dev/v1alpha1",
    kind: "LangGraphRun",
    metadata: { name: "kb-refresh", namespace: "agents", uid: "run-uid-1" },
    spec: {
      template: {
        metadata: { labels: { app: "kb-graph" } },
        spec: {
          containers: [
            {
              name: "graph",
              image: "ghcr.io/acme/kb-graph:1.4",
              env: [
                { name: "HTTP_PROXY", value: "http://evil:3128" },
                { name: "MODE", value: "full" },
              ],
            },
          ],
          ...podSpec,
        },
      },
      access: [
        { connection: "kb-postgres", actions: ["read", "write"] },
        { connection: "kb-api", actions: ["read"] },
      ],
      maxDuration: "30m",
    },
  };
}

function build(r = run()) {
  return buildJob({
    run: r,
    connections: [postgres, api],
    sidecar,
    jobName: "kb-refresh",
    activeDeadlineSeconds: 1800,
  });
}

function envOf(container: { env?: { name: string; value?: string }[] } | undefined) {
  return Object.fromEntries((container?.env ?? []).map((e) => [e.name, e.value]));
}

describe("buildJob", () => {
  it("runs the sidecar as a native sidecar that gates the graph on /ready", () => {
    const pod = build().spec?.template.spec;
    const [first] = pod?.initContainers ?? [];
    assert.equal(first?.name, sidecarContainerName);
    assert.equal(first?.restartPolicy, "Always");
    assert.equal(first?.startupProbe?.httpGet?.path, "/ready");
    assert.equal(first?.startupProbe?.httpGet?.port, 15020);
  });

  it("mounts the projected langgraph-jit token into the sidecar only", () => {
    const pod = build().spec?.template.spec;
    const volume = pod?.volumes?.find((v) => v.projected);
    const token = volume?.projected?.sources?.[0]?.serviceAccountToken;
    assert.equal(token?.audience, "langgraph-jit");
    assert.equal(token?.expirationSeconds, 600);
    const sidecarMounts = pod?.initContainers?.[0]?.volumeMounts?.map((m) => m.name);
    assert.ok(sidecarMounts?.includes(volume?.name ?? ""));
    for (const graph of pod?.containers ?? []) {
      assert.ok(!(graph.volumeMounts ?? []).some((m) => m.name === volume?.name));
    }
    assert.equal(pod?.automountServiceAccountToken, false);
  });

  it("gives the graph loopback URLs and proxy variables, replacing its own", () => {
    const env = envOf(build().spec?.template.spec?.containers[0]);
    assert.equal(env.LGJIT_KB_POSTGRES_URL, "postgres://run@127.0.0.1:15432/kb");
    assert.equal(env.LGJIT_KB_API_URL, "http://127.0.0.1:15433");
    assert.equal(env.DATABASE_URL, "postgres://run@127.0.0.1:15432/kb");
    assert.equal(env.HTTP_PROXY, "http://127.0.0.1:15000");
    assert.equal(env.HTTPS_PROXY, "http://127.0.0.1:15000");
    assert.equal(env.NO_PROXY, "127.0.0.1,localhost");
    assert.equal(env.MODE, "full");
    const names = build().spec?.template.spec?.containers[0]?.env?.map((e) => e.name) ?? [];
    assert.equal(names.filter((n) => n === "HTTP_PROXY").length, 1);
  });

  it("puts no secret and no non-loopback address in the graph's environment", () => {
    for (const { value } of graphEnvironment([postgres, api])) {
      assert.doesNotMatch(value ?? "", /kb\.db\.svc|kb-api\.internal|password|token/i);
    }
  });

  it("sets DATABASE_URL only with exactly one postgres connection", () => {
    const other: Connection = { ...postgres, metadata: { name: "other-db" } };
    const names = graphEnvironment([postgres, other]).map((e) => e.name);
    assert.ok(!names.includes("DATABASE_URL"));
  });

  it("tells the sidecar where the operator is and which CA its certificate chains to", () => {
    const env = envOf(build().spec?.template.spec?.initContainers?.[0]);
    assert.equal(env.LGJIT_OPERATOR_URL, sidecar.operatorUrl);
    assert.equal(env.LGJIT_OPERATOR_CA, sidecar.operatorCaPem);
  });

  it("locks the sidecar down: dedicated non-root UID, no capabilities, read-only root", () => {
    const context = build().spec?.template.spec?.initContainers?.[0]?.securityContext;
    assert.equal(context?.runAsUser, 17337);
    assert.equal(context?.runAsNonRoot, true);
    assert.deepEqual(context?.capabilities?.drop, ["ALL"]);
    assert.equal(context?.readOnlyRootFilesystem, true);
    assert.equal(context?.allowPrivilegeEscalation, false);
  });

  it("refuses a graph container asking for the sidecar's UID", () => {
    const template = run({
      containers: [{ name: "graph", image: "g", securityContext: { runAsUser: 17337 } }],
    });
    assert.throws(
      () => build(template),
      (error: unknown) => {
        assert.ok(error instanceof TemplateRefused);
        assert.match(error.message, /container "graph" runs as UID 17337, which is reserved/);
        return true;
      },
    );
  });

  it("refuses the sidecar's UID inherited from the pod security context", () => {
    const template = run({ securityContext: { runAsUser: 17337 } });
    assert.throws(() => build(template), /runs as UID 17337/);
  });

  it("refuses a graph container that mounts the sidecar's token or state volume", () => {
    for (const name of ["langgraph-jit-token", "langgraph-jit-state"]) {
      const template = run({
        containers: [{ name: "graph", image: "g", volumeMounts: [{ name, mountPath: "/t" }] }],
      });
      assert.throws(() => build(template), new RegExp(`mounts volume "${name}"`));
    }
  });

  it("refuses a volume projecting a token for the sidecar's audience", () => {
    const template = run({
      volumes: [
        {
          name: "mine",
          projected: {
            sources: [{ serviceAccountToken: { audience: "langgraph-jit", path: "t" } }],
          },
        },
      ],
    });
    assert.throws(() => build(template), /projects a token for audience "langgraph-jit"/);
  });

  it("refuses host namespaces, a shared process namespace and SYS_PTRACE", () => {
    for (const field of ["hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"]) {
      assert.throws(() => build(run({ [field]: true })), new RegExp(`sets ${field}`));
    }
    const ptrace = run({
      containers: [
        {
          name: "graph",
          image: "g",
          securityContext: { capabilities: { add: ["CAP_SYS_PTRACE"] } },
        },
      ],
    });
    assert.throws(() => build(ptrace), /adds the SYS_PTRACE capability/);
  });

  it("accepts as a run pod only the pod spec the operator built, with its own sidecar", () => {
    const settings = { image: sidecar.image, uid: sidecar.uid };
    const pod = build().spec?.template.spec;
    assert.doesNotThrow(() => checkRunPod(pod, settings));
    const spy = structuredClone(pod);
    const graph = spy?.containers[0];
    if (graph) graph.volumeMounts = [{ name: "langgraph-jit-token", mountPath: "/t" }];
    assert.throws(() => checkRunPod(spy, settings), /mounts volume "langgraph-jit-token"/);
    const impostor = structuredClone(pod);
    if (impostor?.initContainers?.[0]) impostor.initContainers[0].image = "evil/sidecar:1";
    assert.throws(() => checkRunPod(impostor, settings), /is not the operator's/);
    const debugged = structuredClone(pod);
    if (debugged) {
      debugged.ephemeralContainers = [
        { name: "debug", volumeMounts: [{ name: "langgraph-jit-token", mountPath: "/t" }] },
      ];
    }
    assert.throws(() => checkRunPod(debugged, settings), /ephemeral container mounts/);
    assert.throws(() => checkRunPod({ containers: [] }, settings), /has no langgraph-jit sidecar/);
  });

  it("refuses NET_ADMIN and privileged graph containers", () => {
    const netAdmin = run({
      containers: [
        { name: "graph", image: "g", securityContext: { capabilities: { add: ["NET_ADMIN"] } } },
      ],
    });
    assert.throws(() => build(netAdmin), /adds the NET_ADMIN capability/);
    const privileged = run({
      initContainers: [{ name: "setup", image: "g", securityContext: { privileged: true } }],
    });
    assert.throws(() => build(privileged), /container "setup" is privileged/);
  });

  it("owns the Job by the run, labels it, and bounds it by the deadline", () => {
    const job = build();
    assert.deepEqual(job.metadata?.ownerReferences?.[0], {
      apiVersion: "langgraph-jit.dev/v1alpha1",
      kind: "LangGraphRun",
      name: "kb-refresh",
      uid: "run-uid-1",
      controller: true,
      blockOwnerDeletion: true,
    });
    assert.equal(job.metadata?.labels?.["langgraph-jit.dev/run"], "kb-refresh");
    assert.equal(job.spec?.template.metadata?.labels?.["langgraph-jit.dev/run"], "kb-refresh");
    assert.equal(job.spec?.template.metadata?.labels?.app, "kb-graph");
    assert.equal(job.spec?.activeDeadlineSeconds, 1800);
    assert.equal(job.spec?.backoffLimit, 0);
    assert.equal(job.spec?.template.spec?.restartPolicy, "Never");
  });
});
