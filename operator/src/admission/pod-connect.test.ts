import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import type { AdmissionRequest } from "./admission-review.ts";
import { type PodConnectOptions, validatePodConnect } from "./pod-connect.ts";

const runPod: V1Pod = {
  metadata: {
    name: "kb-refresh-x7k2q",
    namespace: "agents",
    labels: { "langgraph-jit.dev/run": "kb-refresh" },
  },
  spec: {
    initContainers: [{ name: "langgraph-jit-sidecar", restartPolicy: "Always" }],
    containers: [{ name: "graph" }],
  },
};
const otherPod: V1Pod = {
  metadata: { name: "web-1", namespace: "agents" },
  spec: { containers: [{ name: "web" }] },
};

const connect = (
  subResource: "exec" | "attach" | "portforward",
  object: PodConnectOptions,
  name = "kb-refresh-x7k2q",
): AdmissionRequest<PodConnectOptions> => ({
  uid: "u-1",
  kind: { group: "", version: "v1", kind: "PodExecOptions" },
  resource: { group: "", version: "v1", resource: "pods" },
  subResource,
  namespace: "agents",
  name,
  operation: "CONNECT",
  userInfo: { username: "dev@example.com", groups: ["team-edit"] },
  object,
});

const pods = {
  pod: async (_: string, name: string) => [runPod, otherPod].find((p) => p.metadata?.name === name),
};

describe("validatePodConnect", () => {
  it("refuses an exec or attach into a run pod's sidecar, naming the run", async () => {
    for (const subResource of ["exec", "attach"] as const) {
      const answer = await validatePodConnect(
        connect(subResource, { container: "langgraph-jit-sidecar" }),
        pods,
      );
      assert.equal(answer.allowed, false, subResource);
      assert.equal(answer.status?.code, 403);
      assert.match(
        answer.status?.message ?? "",
        new RegExp(
          `^pods/${subResource} to agents/kb-refresh-x7k2q: container langgraph-jit-sidecar holds run kb-refresh's credential`,
        ),
      );
    }
  });

  it("allows an exec into the graph's container", async () => {
    const answer = await validatePodConnect(connect("exec", { container: "graph" }), pods);
    assert.equal(answer.allowed, true);
  });

  it("refuses every port-forward to a pod with the sidecar, with or without ports", async () => {
    for (const ports of [[15432], [8080], undefined]) {
      const answer = await validatePodConnect(connect("portforward", { ports }), pods);
      assert.equal(answer.allowed, false, JSON.stringify(ports));
      assert.match(answer.status?.message ?? "", /no port of it may be forwarded/);
    }
  });

  it("leaves pods without the sidecar, and pods that do not exist, to RBAC", async () => {
    for (const request of [
      connect("portforward", { ports: [15432] }, "web-1"),
      connect("exec", { container: "langgraph-jit-sidecar" }, "web-1"),
      connect("portforward", {}, "gone"),
    ]) {
      assert.equal((await validatePodConnect(request, pods)).allowed, true, request.name);
    }
  });

  it("fails closed when the pod cannot be read", async () => {
    const answer = await validatePodConnect(connect("portforward", {}), {
      pod: async () => {
        throw new Error("connection refused");
      },
    });
    assert.equal(answer.allowed, false);
    assert.equal(answer.status?.code, 503);
  });
});
