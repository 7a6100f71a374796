import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Connection, LangGraphRun } from "../../../api/v1alpha1.ts";
import { httpConnection, postgresConnection } from "../testing/connections.ts";
import { buildJob, graphEnvironment, type SidecarSettings } from "./job-builder.ts";
import { sidecarContainerName } from "./pod-contract.ts";

const sidecar: SidecarSettings = {
  image: "langgraph-jit/sidecar:dev",
  imagePullPolicy: "IfNotPresent",
  uid: 17337,
  operatorUrl: "https://langgraph-jit.langgraph-jit.svc:8443",
  operatorCaPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
  capture: false,
};

const postgres = postgresConnection();
const api = httpConnection();

function run(
  podSpec: Partial<NonNullable<NonNullable<LangGraphRun["spec"]["template"]>["spec"]>> = {},
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

function build(r = run(), settings = sidecar) {
  return buildJob({
    run: r,
    connections: [postgres, api],
    sidecar: settings,
    jobName: "kb-refresh",
    serviceAccount: "langgraph-jit-run",
    seal: "v1.test-seal",
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

  it("has the graph trust the sidecar's pod CA, from a volume only the sidecar writes", () => {
    const pod = build().spec?.template.spec;
    const [sidecar] = pod?.initContainers ?? [];
    const graph = pod?.containers[0];
    const env = envOf(graph);
    const bundle = "/var/run/langgraph-jit/trust/ca-bundle.pem";
    for (const name of ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"]) {
      assert.equal(env[name], bundle, name);
    }
    assert.equal(env.NODE_EXTRA_CA_CERTS, "/var/run/langgraph-jit/trust/ca.pem");
    assert.equal(env.NODE_USE_ENV_PROXY, "1");
    assert.equal(envOf(sidecar).LGJIT_TRUST_DIR, "/var/run/langgraph-jit/trust");
    const volume = pod?.volumes?.find((v) => v.name === "langgraph-jit-trust");
    assert.equal(volume?.emptyDir?.medium, "Memory");
    const mount = (c: typeof graph) => c?.volumeMounts?.find((m) => m.name === volume?.name);
    assert.equal(mount(sidecar)?.readOnly, undefined);
    assert.equal(mount(graph)?.readOnly, true);
    assert.equal(mount(graph)?.mountPath, "/var/run/langgraph-jit/trust");
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

  it("runs the pod as the policy's ServiceAccount with no API token, whatever the template says", () => {
    const pod = build(run({ serviceAccount: "default" })).spec?.template.spec;
    assert.equal(pod?.serviceAccountName, "langgraph-jit-run");
    assert.equal(pod?.serviceAccount, undefined);
    assert.equal(pod?.automountServiceAccountToken, false);
  });

  it("seals the Job as the operator's", () => {
    assert.equal(build().metadata?.annotations?.["langgraph-jit.dev/seal"], "v1.test-seal");
  });

  it("adds no capture container unless capture is on", () => {
    const names = build().spec?.template.spec?.initContainers?.map((c) => c.name);
    assert.deepEqual(names, [sidecarContainerName]);
  });

  it("with capture, captures the pod's egress first and keeps graphs from taking the sidecar's UID", () => {
    const withInit = run({ initContainers: [{ name: "setup", image: "g" }] });
    const pod = build(withInit, { ...sidecar, capture: true }).spec?.template.spec;
    const [capture, ours, setup] = pod?.initContainers ?? [];
    assert.equal(capture?.name, "langgraph-jit-capture");
    assert.deepEqual(capture?.command, ["/app/sidecar/bin/capture"]);
    assert.deepEqual(capture?.securityContext?.capabilities, {
      drop: ["ALL"],
      add: ["NET_ADMIN", "NET_RAW"],
    });
    assert.equal(
      capture?.restartPolicy,
      undefined,
      "a plain init container: it ends before the rest start",
    );
    assert.equal(envOf(capture).LGJIT_SIDECAR_UID, "17337");
    assert.equal(ours?.name, sidecarContainerName);
    for (const graph of [setup, ...(pod?.containers ?? [])]) {
      assert.deepEqual(graph?.securityContext?.capabilities?.drop, ["NET_RAW", "SETUID", "SETGID"]);
      assert.equal(graph?.securityContext?.allowPrivilegeEscalation, false);
    }
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
