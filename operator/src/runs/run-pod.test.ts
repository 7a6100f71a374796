// Only a pod the operator built for the run, its sidecar exactly as generated, is the run's
// (invariant 8): anyone who may create pods can claim the run's Job as owner and copy its
// labels, so every field that decides what the pod can reach is held to the Job's template.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Container, V1Job, V1Pod } from "@kubernetes/client-node";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { httpConnection } from "../testing/connections.ts";
import { buildJob } from "./job-builder.ts";
import { podDeviation } from "./run-pod.ts";

const run: LangGraphRun = {
  metadata: { name: "kb-refresh", namespace: "agents", uid: "run-1" },
  spec: {
    template: { spec: { containers: [{ name: "graph", image: "ghcr.io/acme/kb-graph:1.4" }] } },
    access: [{ connection: "kb-api", actions: ["read"] }],
    maxDuration: "30m",
  },
};

const job: V1Job = {
  ...buildJob({
    run,
    connections: [httpConnection()],
    sidecar: {
      image: "langgraph-jit/sidecar:0.1.0",
      imagePullPolicy: "IfNotPresent",
      uid: 17337,
      operatorUrl: "https://langgraph-jit.langgraph-jit.svc:8443",
      operatorCaPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
      capture: false,
    },
    jobName: "kb-refresh",
    serviceAccount: "langgraph-jit-run",
    seal: "v1.x",
    activeDeadlineSeconds: 1800,
  }),
};
job.metadata = { ...job.metadata, uid: "job-1" };

/** The pod the Job controller makes: the template, its labels and the LimitRange's resources. */
function jobPod(change: (pod: V1Pod & { spec: NonNullable<V1Pod["spec"]> }) => void = () => {}) {
  const template = structuredClone(job.spec?.template);
  const pod = {
    metadata: {
      name: "kb-refresh-x7k2p",
      labels: {
        ...template?.metadata?.labels,
        "batch.kubernetes.io/controller-uid": "job-1",
        "batch.kubernetes.io/job-name": "kb-refresh",
      },
    },
    spec: structuredClone(template?.spec) as NonNullable<V1Pod["spec"]>,
  };
  for (const container of pod.spec.containers) container.resources = { limits: { cpu: "1" } };
  change(pod);
  return pod;
}

const sidecarOf = (pod: { spec: NonNullable<V1Pod["spec"]> }): V1Container => {
  const sidecar = pod.spec.initContainers?.[0];
  assert.ok(sidecar);
  return sidecar;
};

describe("podDeviation", () => {
  it("accepts the Job's own pod, whatever resources a LimitRange gave it", () => {
    assert.equal(podDeviation(jobPod(), job), undefined);
  });

  it("refuses a sidecar that reports to another operator", () => {
    const pod = jobPod((p) => {
      const env = sidecarOf(p).env?.find((e) => e.name === "LGJIT_OPERATOR_URL");
      if (env) env.value = "https://collector.evil.example";
    });
    assert.equal(
      podDeviation(pod, job),
      'initContainers[0] "langgraph-jit-sidecar".env differs from the Job\'s template',
    );
  });

  it("refuses a sidecar with an inspector, or a hook that copies its token", () => {
    const inspected = jobPod((p) => {
      sidecarOf(p).env?.push({ name: "NODE_OPTIONS", value: "--inspect=0.0.0.0:9229" });
    });
    assert.match(podDeviation(inspected, job) ?? "", /"langgraph-jit-sidecar"\.env differs/);
    const hooked = jobPod((p) => {
      sidecarOf(p).lifecycle = {
        postStart: { exec: { command: ["cp", "/var/run/secrets/langgraph-jit/token", "/tmp"] } },
      };
    });
    assert.match(podDeviation(hooked, job) ?? "", /"langgraph-jit-sidecar"\.lifecycle differs/);
    const probed = jobPod((p) => {
      sidecarOf(p).startupProbe = { exec: { command: ["true"] } };
    });
    assert.match(podDeviation(probed, job) ?? "", /"langgraph-jit-sidecar"\.startupProbe differs/);
    const rooted = jobPod((p) => {
      sidecarOf(p).securityContext = { runAsUser: 0 };
    });
    assert.match(
      podDeviation(rooted, job) ?? "",
      /"langgraph-jit-sidecar"\.securityContext differs/,
    );
  });

  it("refuses a token of another audience or lifetime", () => {
    for (const change of [
      { audience: "https://kubernetes.default.svc" },
      { expirationSeconds: 86400 },
    ]) {
      const pod = jobPod((p) => {
        const token = p.spec.volumes?.find((v) => v.name === "langgraph-jit-token");
        const source = token?.projected?.sources?.[0]?.serviceAccountToken;
        if (source) Object.assign(source, change);
      });
      assert.equal(podDeviation(pod, job), "its volumes differ from the Job's template");
    }
  });

  it("refuses a graph container, a mount or a pod-wide field the Job does not have", () => {
    const extra = jobPod((p) => {
      p.spec.containers.push({ name: "spy", image: "evil" });
    });
    assert.equal(podDeviation(extra, job), "containers has 2 containers, the Job's template 1");
    const other = jobPod((p) => {
      const [graph] = p.spec.containers;
      if (graph) graph.image = "evil/graph:1";
    });
    assert.equal(
      podDeviation(other, job),
      'containers[0] "graph".image differs from the Job\'s template',
    );
    const account = jobPod((p) => {
      p.spec.serviceAccountName = "editor";
    });
    assert.equal(
      podDeviation(account, job),
      "spec.serviceAccountName differs from the Job's template",
    );
    const aliased = jobPod((p) => {
      p.spec.hostAliases = [{ ip: "10.0.0.9", hostnames: ["langgraph-jit.langgraph-jit.svc"] }];
    });
    assert.equal(podDeviation(aliased, job), "spec.hostAliases differs from the Job's template");
    const debugged = jobPod((p) => {
      p.spec.ephemeralContainers = [{ name: "debug", image: "busybox" }];
    });
    assert.equal(podDeviation(debugged, job), "it has ephemeral containers");
  });

  it("refuses a pod whose Job-controller labels name another Job", () => {
    const pod = jobPod((p) => {
      if (p.metadata?.labels) p.metadata.labels["batch.kubernetes.io/controller-uid"] = "job-2";
    });
    assert.match(
      podDeviation(pod, job) ?? "",
      /label batch\.kubernetes\.io\/controller-uid is not the uid/,
    );
    const unlabelled = jobPod((p) => {
      if (p.metadata?.labels) delete p.metadata.labels["batch.kubernetes.io/job-name"];
    });
    assert.match(podDeviation(unlabelled, job) ?? "", /label batch\.kubernetes\.io\/job-name/);
  });
});
