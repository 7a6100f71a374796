import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import type { AdmissionRequest } from "./admission-review.ts";
import { mutateRun, requesterOf, validateRun } from "./run-admission.ts";

const alice = {
  username: "alice@example.com",
  uid: "a-1",
  groups: ["ml-platform", "system:authenticated"],
};
const stamp = JSON.stringify(alice);
const sidecarUid = 17337;

function run(annotations?: Record<string, string>, phase?: string): LangGraphRun {
  return {
    metadata: { name: "r", namespace: "agents", ...(annotations ? { annotations } : {}) },
    spec: {
      template: { spec: { containers: [{ name: "graph", image: "g" }] } },
      access: [{ connection: "kb-postgres", actions: ["read"] }],
      maxDuration: "30m",
    },
    ...(phase ? { status: { phase: phase as "Running" } } : {}),
  };
}

function request(
  operation: "CREATE" | "UPDATE",
  object: LangGraphRun,
  oldObject?: LangGraphRun,
): AdmissionRequest<LangGraphRun> {
  return {
    uid: "req-1",
    kind: { group: "langgraph-jit.dev", version: "v1alpha1", kind: "LangGraphRun" },
    resource: { group: "langgraph-jit.dev", version: "v1alpha1", resource: "langgraphruns" },
    operation,
    userInfo: alice,
    object,
    ...(oldObject ? { oldObject } : {}),
  };
}

function decodePatch(patch: string | undefined): unknown {
  return JSON.parse(Buffer.from(patch ?? "", "base64").toString());
}

describe("mutateRun", () => {
  it("stamps the requester from userInfo on CREATE", () => {
    const response = mutateRun(request("CREATE", run()));
    assert.equal(response.allowed, true);
    assert.deepEqual(decodePatch(response.patch), [
      { op: "add", path: "/metadata/annotations", value: { "langgraph-jit.dev/requester": stamp } },
    ]);
  });

  it("adds to existing annotations with an escaped JSON pointer", () => {
    const response = mutateRun(request("CREATE", run({ team: "kb" })));
    assert.deepEqual(decodePatch(response.patch), [
      { op: "add", path: "/metadata/annotations/langgraph-jit.dev~1requester", value: stamp },
    ]);
  });

  it("rejects a CREATE that sets the requester itself, saying so", () => {
    const forged = JSON.stringify({ username: "bob@example.com", groups: ["security"] });
    const response = mutateRun(request("CREATE", run({ "langgraph-jit.dev/requester": forged })));
    assert.equal(response.allowed, false);
    assert.equal(response.status?.code, 403);
    assert.match(
      response.status?.message ?? "",
      /langgraph-jit\.dev\/requester.*a request may not set it/,
    );
  });

  it("does not touch updates", () => {
    const response = mutateRun(request("UPDATE", run({ "langgraph-jit.dev/requester": stamp })));
    assert.deepEqual(response, { uid: "req-1", allowed: true });
  });
});

describe("validateRun", () => {
  it("accepts a CREATE whose stamp is the authenticated user", () => {
    const response = validateRun(
      request("CREATE", run({ "langgraph-jit.dev/requester": stamp })),
      sidecarUid,
    );
    assert.equal(response.allowed, true);
  });

  it("rejects a CREATE whose stamp differs from the authenticated user", () => {
    const other = JSON.stringify({ ...alice, username: "bob@example.com" });
    const response = validateRun(
      request("CREATE", run({ "langgraph-jit.dev/requester": other })),
      sidecarUid,
    );
    assert.equal(response.allowed, false);
    assert.match(response.status?.message ?? "", /does not match the authenticated requester/);
  });

  it("rejects a change of the requester on UPDATE", () => {
    const old = run({ "langgraph-jit.dev/requester": stamp });
    const changed = run({
      "langgraph-jit.dev/requester": JSON.stringify({ username: "mallory@example.com" }),
    });
    const response = validateRun(request("UPDATE", changed, old), sidecarUid);
    assert.equal(response.allowed, false);
    assert.match(response.status?.message ?? "", /is immutable/);
  });

  it("allows spec changes while the run is Pending", () => {
    const old = run({ "langgraph-jit.dev/requester": stamp });
    const changed = run({ "langgraph-jit.dev/requester": stamp });
    changed.spec.access = [{ connection: "kb-postgres", actions: ["read", "write"] }];
    assert.equal(validateRun(request("UPDATE", changed, old), sidecarUid).allowed, true);
  });

  it("rejects changes to access, template or maxDuration once the run left Pending, naming them", () => {
    const old = run({ "langgraph-jit.dev/requester": stamp }, "Running");
    const changed = run({ "langgraph-jit.dev/requester": stamp }, "Running");
    changed.spec.access = [{ connection: "kb-postgres", actions: ["read", "write"] }];
    changed.spec.maxDuration = "2h";
    const response = validateRun(request("UPDATE", changed, old), sidecarUid);
    assert.equal(response.allowed, false);
    assert.equal(
      response.status?.message,
      "spec.access, spec.maxDuration cannot change once the run has left Pending (phase Running)",
    );
  });

  it("allows metadata-only updates of a running run, such as a finalizer", () => {
    const old = run({ "langgraph-jit.dev/requester": stamp }, "Running");
    const changed = run({ "langgraph-jit.dev/requester": stamp }, "Running");
    changed.metadata = { ...changed.metadata, finalizers: ["langgraph-jit.dev/revoke"] };
    assert.equal(validateRun(request("UPDATE", changed, old), sidecarUid).allowed, true);
  });

  it("refuses a template whose container takes the sidecar's UID", () => {
    const bad = run({ "langgraph-jit.dev/requester": stamp });
    bad.spec.template.spec = {
      containers: [{ name: "graph", securityContext: { runAsUser: sidecarUid } }],
    };
    const response = validateRun(request("CREATE", bad), sidecarUid);
    assert.equal(response.allowed, false);
    assert.equal(response.status?.code, 422);
    assert.match(
      response.status?.message ?? "",
      /^spec\.template: container "graph" runs as UID 17337/,
    );
  });
});

describe("requesterOf", () => {
  it("reads a stamped requester and rejects malformed ones", () => {
    assert.deepEqual(requesterOf(run({ "langgraph-jit.dev/requester": stamp })), alice);
    assert.equal(requesterOf(run({ "langgraph-jit.dev/requester": "{not json" })), undefined);
    assert.equal(requesterOf(run({ "langgraph-jit.dev/requester": "{}" })), undefined);
    assert.equal(requesterOf(run()), undefined);
  });
});
