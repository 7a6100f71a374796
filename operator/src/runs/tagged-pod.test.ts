import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Container, V1Pod, V1PodSpec } from "@kubernetes/client-node";
import { httpConnection, postgresConnection } from "../testing/connections.ts";
import { runIdentityEnv, type SidecarSettings, withSidecar } from "./job-builder.ts";
import { taggedPodDeviation } from "./tagged-pod.ts";

const sidecar: SidecarSettings = {
  image: "localhost/lgjit/sidecar:test",
  imagePullPolicy: "Never",
  uid: 17337,
  operatorUrl: "https://langgraph-jit.langgraph-jit.svc:8443",
  operatorCaPem: "-----BEGIN CERTIFICATE-----\nfirst\n-----END CERTIFICATE-----\n",
  capture: false,
};
const rules = { sidecarUid: 17337, capture: false };
const connections = [httpConnection(), postgresConnection()];

/** What the API server fills in on create, which the pod then carries. */
function defaulted(container: V1Container): V1Container {
  return {
    ...container,
    terminationMessagePath: "/dev/termination-log",
    terminationMessagePolicy: "File",
    env: container.env?.map((e) =>
      e.valueFrom?.fieldRef
        ? { ...e, valueFrom: { fieldRef: { apiVersion: "v1", ...e.valueFrom.fieldRef } } }
        : e,
    ),
    ...(container.startupProbe
      ? { startupProbe: { ...container.startupProbe, timeoutSeconds: 1, successThreshold: 1 } }
      : {}),
  };
}

/** A Deployment's pod as the webhook injected it and the API server stored it. */
function injectedPod(change: (spec: V1PodSpec) => V1PodSpec = (s) => s): V1Pod {
  const spec = withSidecar(
    {
      serviceAccountName: "kb-server",
      dnsPolicy: "ClusterFirst",
      containers: [{ name: "graph", image: "localhost/lgjit/graph:test" }],
    },
    runIdentityEnv(undefined),
    connections,
    sidecar,
  );
  const stored: V1PodSpec = {
    ...spec,
    initContainers: spec.initContainers?.map(defaulted),
    containers: spec.containers.map(defaulted),
    volumes: spec.volumes?.map((v) =>
      v.projected ? { ...v, projected: { ...v.projected, defaultMode: 420 } } : v,
    ),
  };
  return {
    metadata: {
      name: "kb-server-7d9f8-x2x9q",
      namespace: "agents",
      uid: "pod-1",
      labels: { "langgraph-jit.dev/inject": "true", "pod-template-hash": "7d9f8" },
    },
    spec: change(stored),
  };
}

const check = (pod: V1Pod, settings = sidecar) =>
  taggedPodDeviation(pod, connections, settings, rules);

function withSidecarChange(change: (c: V1Container) => V1Container) {
  return injectedPod((spec) => ({
    ...spec,
    initContainers: spec.initContainers?.map((c, i) => (i === 0 ? change(c) : c)),
  }));
}

describe("a tagged pod, checked before it gets a credential", () => {
  it("passes as injected and stored, and after the operator's CA rotated", () => {
    assert.equal(check(injectedPod()), undefined);
    const rotated = {
      ...sidecar,
      operatorCaPem: "-----BEGIN CERTIFICATE-----\nnext\n-----END CERTIFICATE-----\n",
    };
    assert.equal(check(injectedPod(), rotated), undefined);
  });

  it("passes with the pod's own API token mounted into the sidecar, as the API server does", () => {
    const mount = {
      name: "kube-api-access-5tlsn",
      mountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
      readOnly: true,
    };
    const withToken = withSidecarChange((c) => ({
      ...c,
      volumeMounts: [...(c.volumeMounts ?? []), mount],
    }));
    assert.equal(check(withToken), undefined);
    const elsewhere = withSidecarChange((c) => ({
      ...c,
      volumeMounts: [
        ...(c.volumeMounts ?? []),
        { ...mount, mountPath: "/var/lib/langgraph-jit/x" },
      ],
    }));
    assert.match(check(elsewhere) ?? "", /^spec\.initContainers\[0\]\.volumeMounts /);
  });

  it("fails without the sidecar: a pod made without the webhook and labelled afterwards", () => {
    const bare = injectedPod((spec) => ({ ...spec, initContainers: [] }));
    assert.equal(check(bare), "spec.initContainers[0] is not as langgraph-jit injected it");
  });

  it("fails when the sidecar runs anything but itself, or reads more than it should", () => {
    const cases: [(c: V1Container) => V1Container, RegExp][] = [
      [(c) => ({ ...c, image: "evil/sidecar" }), /^spec\.initContainers\[0\]\.image /],
      [(c) => ({ ...c, command: ["sh", "-c", "cat /var/lib/langgraph-jit/*"] }), /\.command /],
      [(c) => ({ ...c, envFrom: [{ configMapRef: { name: "node-options" } }] }), /\.envFrom /],
      [
        (c) => ({ ...c, env: [...(c.env ?? []), { name: "NODE_OPTIONS", value: "--require /x" }] }),
        /\.env /,
      ],
      [
        (c) => ({ ...c, terminationMessagePolicy: "FallbackToLogsOnError" }),
        /\.terminationMessagePolicy /,
      ],
      [
        (c) => ({ ...c, securityContext: { ...c.securityContext, runAsUser: 0 } }),
        /\.securityContext\.runAsUser /,
      ],
    ];
    for (const [change, why] of cases) assert.match(check(withSidecarChange(change)) ?? "", why);
  });

  it("fails when the sidecar's token or state is where the graph can read it", () => {
    const shared = injectedPod((spec) => ({
      ...spec,
      containers: spec.containers.map((c) => ({
        ...c,
        volumeMounts: [...(c.volumeMounts ?? []), { name: "langgraph-jit-state", mountPath: "/s" }],
      })),
    }));
    assert.match(
      check(shared) ?? "",
      /^spec\.containers\[0\]\.volumeMounts\[\d\]: volume "langgraph-jit-state" is the sidecar's/,
    );
    const hostState = injectedPod((spec) => ({
      ...spec,
      volumes: spec.volumes?.map((v) =>
        v.name === "langgraph-jit-state" ? { name: v.name, hostPath: { path: "/tmp" } } : v,
      ),
    }));
    assert.match(
      check(hostState) ?? "",
      /volume langgraph-jit-state\) is not as langgraph-jit injected it$/,
    );
  });

  it("fails when a graph container could become the sidecar", () => {
    const sameUid = injectedPod((spec) => ({
      ...spec,
      containers: spec.containers.map((c) => ({ ...c, securityContext: { runAsUser: 17337 } })),
    }));
    assert.match(check(sameUid) ?? "", /^spec\.containers\[0\]\.securityContext\.runAsUser/);
  });
});
