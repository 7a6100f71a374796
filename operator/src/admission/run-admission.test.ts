import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { postgresConnection } from "../testing/connections.ts";
import { alice, testRun } from "../testing/runs.ts";
import type { AdmissionRequest } from "./admission-review.ts";
import {
  mutateRun,
  type RunAdmissionDeps,
  validateRun,
  validateRunStatus,
} from "./run-admission.ts";

const stamp = JSON.stringify(alice);
const operator = "system:serviceaccount:langgraph-jit:langgraph-jit";
const sidecarUid = 17337;

function run(annotations?: Record<string, string>, phase?: string): LangGraphRun {
  return {
    ...testRun(annotations ? { annotations } : {}),
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
    const response = mutateRun(request("CREATE", run()), operator);
    assert.equal(response.allowed, true);
    assert.deepEqual(decodePatch(response.patch), [
      { op: "add", path: "/metadata/annotations", value: { "langgraph-jit.dev/requester": stamp } },
    ]);
  });

  it("adds to existing annotations with an escaped JSON pointer", () => {
    const response = mutateRun(request("CREATE", run({ team: "kb" })), operator);
    assert.deepEqual(decodePatch(response.patch), [
      { op: "add", path: "/metadata/annotations/langgraph-jit.dev~1requester", value: stamp },
    ]);
  });

  it("rejects a CREATE that sets the requester itself, saying so", () => {
    const forged = JSON.stringify({ username: "bob@example.com", groups: ["security"] });
    const response = mutateRun(
      request("CREATE", run({ "langgraph-jit.dev/requester": forged })),
      operator,
    );
    assert.equal(response.allowed, false);
    assert.equal(response.status?.code, 403);
    assert.match(
      response.status?.message ?? "",
      /langgraph-jit\.dev\/requester.*a request may not set it/,
    );
  });

  it("stamps the authenticator's extra attributes, which a SubjectAccessReview needs", () => {
    const extra = { "authentication.kubernetes.io/credential-id": ["X509SHA256=ab"] };
    const response = mutateRun(
      { ...request("CREATE", run()), userInfo: { ...alice, extra } },
      operator,
    );
    assert.deepEqual(decodePatch(response.patch), [
      {
        op: "add",
        path: "/metadata/annotations",
        value: { "langgraph-jit.dev/requester": JSON.stringify({ ...alice, extra }) },
      },
    ]);
  });

  it("does not touch updates", () => {
    const response = mutateRun(
      request("UPDATE", run({ "langgraph-jit.dev/requester": stamp })),
      operator,
    );
    assert.deepEqual(response, { uid: "req-1", allowed: true });
  });
});

/** Alice may read only the ConfigMap graph-settings; the namespace's one policy names kb-graphs. */
const deps: RunAdmissionDeps = {
  policies: () => [
    {
      metadata: { name: "ml-platform" },
      spec: {
        subjects: [{ kind: "Group", name: "ml-platform" }],
        maxDuration: "1h",
        grants: [{ connection: "kb-postgres", actions: ["read"] }],
        runServiceAccountName: "kb-graphs",
      },
    },
  ],
  connections: () => [postgresConnection()],
  templateReview: {
    rules: { sidecarUid, capture: false },
    requesterMay: async (_requester, _namespace, ref) => ref.name === "graph-settings",
  },
  taggedPod: (namespace, name) =>
    name === "kb-server-7d9f8-x2x9q"
      ? {
          metadata: {
            name,
            namespace,
            uid: "pod-uid-1",
            labels: { "langgraph-jit.dev/inject": "true" },
          },
          spec: { serviceAccountName: "kb-server", containers: [] },
        }
      : undefined,
  operatorUsername: operator,
};

function stamped(phase?: string): LangGraphRun {
  return run({ "langgraph-jit.dev/requester": stamp }, phase);
}

describe("validateRun", () => {
  it("accepts a CREATE whose stamp is the authenticated user", async () => {
    const response = await validateRun(request("CREATE", stamped()), deps);
    assert.equal(response.allowed, true);
  });

  it("rejects a CREATE whose stamp differs from the authenticated user", async () => {
    const other = JSON.stringify({ ...alice, username: "bob@example.com" });
    const response = await validateRun(
      request("CREATE", run({ "langgraph-jit.dev/requester": other })),
      deps,
    );
    assert.equal(response.allowed, false);
    assert.match(response.status?.message ?? "", /does not match the authenticated requester/);
  });

  it("rejects a change of the requester on UPDATE", async () => {
    const changed = run({
      "langgraph-jit.dev/requester": JSON.stringify({ username: "mallory@example.com" }),
    });
    const response = await validateRun(request("UPDATE", changed, stamped()), deps);
    assert.equal(response.allowed, false);
    assert.match(response.status?.message ?? "", /is immutable/);
  });

  it("rejects any change of the spec, even while the run is Pending, naming the fields", async () => {
    const changed = stamped();
    changed.spec.access = [{ connection: "kb-postgres", actions: ["read", "write"] }];
    changed.spec.maxDuration = "2h";
    const response = await validateRun(request("UPDATE", changed, stamped()), deps);
    assert.equal(response.allowed, false);
    assert.equal(
      response.status?.message,
      "spec.access, spec.maxDuration: a run's spec cannot change once it is created; create a new run instead",
    );
  });

  it("allows metadata-only updates of a running run, such as a finalizer", async () => {
    const changed = stamped("Running");
    changed.metadata = { ...changed.metadata, finalizers: ["langgraph-jit.dev/revoke"] };
    const response = await validateRun(request("UPDATE", changed, stamped("Running")), deps);
    assert.equal(response.allowed, true);
  });

  it("refuses a template that breaks a pod rule, with 422 and the field", async () => {
    const bad = stamped();
    assert.ok(bad.spec.template);
    bad.spec.template.spec = {
      containers: [{ name: "graph", securityContext: { runAsUser: sidecarUid } }],
    };
    const response = await validateRun(request("CREATE", bad), deps);
    assert.equal(response.allowed, false);
    assert.equal(response.status?.code, 422);
    assert.match(
      response.status?.message ?? "",
      /^spec\.template\.spec\.containers\[0\]\.securityContext\.runAsUser: UID 17337 is reserved/,
    );
  });

  it("reviews the template as the requester: what they may read passes, what they may not is refused", async () => {
    const withVolume = (volume: object) => {
      const r = stamped();
      assert.ok(r.spec.template);
      r.spec.template.spec = { containers: [{ name: "graph" }], volumes: [volume as never] };
      return r;
    };
    const allowed = withVolume({ name: "s", configMap: { name: "graph-settings" } });
    assert.equal((await validateRun(request("CREATE", allowed), deps)).allowed, true);
    const refused = await validateRun(
      request("CREATE", withVolume({ name: "s", secret: { secretName: "payroll" } })),
      deps,
    );
    assert.equal(
      refused.status?.message,
      'spec.template.spec.volumes[0].secret: alice@example.com may not get secrets "payroll" in namespace "agents", so the run\'s pod may not either',
    );
    const connectionSecret = await validateRun(
      request("CREATE", withVolume({ name: "s", secret: { secretName: "kb-admin" } })),
      deps,
    );
    assert.match(
      connectionSecret.status?.message ?? "",
      /holds the credentials of Connection "kb-postgres"/,
    );
  });

  it("accepts only the ServiceAccounts the namespace's policies name for runs", async () => {
    for (const [account, allowed] of [
      ["langgraph-jit-run", true],
      ["kb-graphs", true],
      ["editor", false],
    ] as const) {
      const r = stamped();
      assert.ok(r.spec.template);
      r.spec.template.spec = { containers: [{ name: "graph" }], serviceAccountName: account };
      assert.equal((await validateRun(request("CREATE", r), deps)).allowed, allowed, account);
    }
  });

  it("refuses, never admits, a template it could not review", async () => {
    const r = stamped();
    assert.ok(r.spec.template);
    r.spec.template.spec = {
      containers: [{ name: "graph" }],
      volumes: [{ name: "s", secret: { secretName: "graph-token" } }],
    };
    const down = {
      ...deps,
      templateReview: {
        ...deps.templateReview,
        requesterMay: () => Promise.reject(new Error("connect ECONNREFUSED 10.96.0.1:443")),
      },
    };
    const response = await validateRun(request("CREATE", r), down);
    assert.equal(response.allowed, false);
    assert.equal(response.status?.code, 503);
    assert.match(
      response.status?.message ?? "",
      /could not be reviewed as alice@example.com: connect ECONNREFUSED/,
    );
  });
});

describe("validateRunStatus", () => {
  const statusRequest = (username: string) => ({
    ...request("UPDATE", stamped("Running"), stamped("Pending")),
    subResource: "status",
    namespace: "agents",
    name: "r",
    userInfo: { username },
  });

  it("lets the operator write a run's status", () => {
    const response = validateRunStatus(
      statusRequest("system:serviceaccount:lgjit:operator"),
      "system:serviceaccount:lgjit:operator",
    );
    assert.equal(response.allowed, true);
  });

  it("refuses anyone else, cluster admins included", () => {
    for (const user of ["alice@example.com", "admin"]) {
      const response = validateRunStatus(
        statusRequest(user),
        "system:serviceaccount:lgjit:operator",
      );
      assert.equal(response.allowed, false);
      assert.equal(
        response.status?.message,
        `status of LangGraphRun agents/r is written by langgraph-jit (system:serviceaccount:lgjit:operator) alone, not by ${user}`,
      );
    }
  });
});

describe("a tagged pod's run", () => {
  const account = {
    username: "system:serviceaccount:agents:kb-server",
    uid: "",
    groups: ["system:serviceaccounts", "system:serviceaccounts:agents", "system:authenticated"],
  };
  function sourceRun(
    requester: object = account,
    source = {
      pod: "kb-server-7d9f8-x2x9q",
      uid: "pod-uid-1",
      owner: "ReplicaSet/kb-server-7d9f8",
    },
  ): LangGraphRun {
    const base = testRun({
      annotations: { "langgraph-jit.dev/requester": JSON.stringify(requester) },
    });
    const { template: _none, ...spec } = base.spec;
    return {
      ...base,
      metadata: { ...base.metadata, namespace: "agents" },
      spec: { ...spec, source },
    };
  }
  const as = (username: string, run: LangGraphRun) => ({
    ...request("CREATE", run),
    namespace: "agents",
    userInfo: { username },
  });

  it("is created by the operator alone, stamped with the pod's ServiceAccount", async () => {
    assert.deepEqual(mutateRun(as(operator, sourceRun()), operator), {
      uid: "req-1",
      allowed: true,
    });
    assert.equal((await validateRun(as(operator, sourceRun()), deps)).allowed, true);
  });

  it("is refused to anyone else, whatever it claims", async () => {
    const why =
      "spec.source: only langgraph-jit records a tagged pod as a run; write spec.template instead";
    for (const user of ["alice@example.com", "system:serviceaccount:agents:kb-server"]) {
      assert.equal(mutateRun(as(user, sourceRun()), operator).status?.message, why);
      assert.equal((await validateRun(as(user, sourceRun()), deps)).status?.message, why);
    }
  });

  it("must name a tagged pod the cache knows, by uid, and its account as requester", async () => {
    const replaced = sourceRun(account, {
      pod: "kb-server-7d9f8-x2x9q",
      uid: "pod-uid-0",
      owner: "",
    });
    assert.equal(
      (await validateRun(as(operator, replaced), deps)).status?.message,
      "spec.source: tagged pod agents/kb-server-7d9f8-x2x9q (uid pod-uid-0) is not known",
    );
    const forged = sourceRun({ ...account, username: "system:serviceaccount:agents:admin" });
    assert.equal(
      (await validateRun(as(operator, forged), deps)).status?.message,
      "metadata.annotations[langgraph-jit.dev/requester] must be the pod's ServiceAccount, system:serviceaccount:agents:kb-server",
    );
  });
});
