// Malformed resources are refused by the API server itself (schema and CEL rules in crds/),
// with a message naming the field, and nothing is stored.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AccessPolicy } from "../../api/v1alpha1.ts";
import { statusOf } from "../lib/cluster.ts";
import { useOperator } from "../lib/operator.ts";
import { createObject, customObjects, runManifest } from "../lib/runs.ts";

const apiVersion = "langgraph-jit.dev/v1alpha1";

async function rejection(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (error) {
    assert.equal(statusOf(error), 422, String(error));
    return JSON.parse((error as { body: string }).body).message as string;
  }
  throw new Error("the API server accepted an invalid object");
}

describe("CRD validation", () => {
  const suite = useOperator("validation");

  it("refuses a Connection with both postgres and http", async () => {
    const message = await rejection(
      createObject("admin", suite.ns.name, "connections", {
        apiVersion,
        kind: "Connection",
        metadata: { name: "both" },
        spec: {
          postgres: { host: "db", database: "kb", credentials: { secretRef: { name: "s" } } },
          http: { url: "https://api.example.com" },
        },
      }),
    );
    assert.match(
      message,
      /spec: Invalid value: "object": exactly one of spec.postgres or spec.http must be set/,
    );
  });

  it("refuses an http Connection whose URL is not absolute http(s)", async () => {
    const message = await rejection(
      createObject("admin", suite.ns.name, "connections", {
        apiVersion,
        kind: "Connection",
        metadata: { name: "bad-url" },
        spec: { http: { url: "ftp://files.example.com" } },
      }),
    );
    assert.match(
      message,
      /spec\.http\.url: Invalid value: "string": must be an absolute http or https URL/,
    );
  });

  it("refuses an AccessPolicy whose maxDuration is not a positive duration of at most 168h", async () => {
    for (const maxDuration of ["soon", "0s", "720h"]) {
      const message = await rejection(
        createObject("admin", suite.ns.name, "accesspolicies", {
          apiVersion,
          kind: "AccessPolicy",
          metadata: { name: "bad-duration" },
          spec: {
            subjects: [{ kind: "Group", name: "g" }],
            maxDuration,
            grants: [{ connection: "c", actions: ["read"] }],
          },
        }),
      );
      assert.match(message, /spec\.maxDuration/);
      if (maxDuration === "720h") assert.match(message, /a positive duration of at most 168h/);
    }
  });

  it("caps a run's maxDuration at 168h, which Node's timers could not wait for", async () => {
    const message = await rejection(
      createObject(
        "admin",
        suite.ns.name,
        "langgraphruns",
        runManifest("month", { maxDuration: "600h" }),
      ),
    );
    assert.match(
      message,
      /spec\.maxDuration: Invalid value: "string": must be a positive duration of at most 168h/,
    );
  });

  it("refuses postgres-only actions in a grant with http rules, and approval beyond the actions", async () => {
    const message = await rejection(
      createObject("admin", suite.ns.name, "accesspolicies", {
        apiVersion,
        kind: "AccessPolicy",
        metadata: { name: "bad-grant" },
        spec: {
          subjects: [{ kind: "User", name: "alice@example.com" }],
          grants: [
            {
              connection: "kb-api",
              actions: ["read", "ddl"],
              http: { rules: [{ methods: ["GET"], paths: ["/v1/**"] }] },
              approval: { actions: ["write"], approvers: [{ kind: "Group", name: "security" }] },
            },
          ],
        },
      }),
    );
    assert.match(message, /a grant with http rules allows only the actions read and write/);
    assert.match(message, /approval\.actions must be a subset of actions/);
  });

  it("refuses a namespace on a User subject and an unknown action on a run", async () => {
    const subject = await rejection(
      createObject("admin", suite.ns.name, "accesspolicies", {
        apiVersion,
        kind: "AccessPolicy",
        metadata: { name: "bad-subject" },
        spec: {
          subjects: [{ kind: "User", name: "alice@example.com", namespace: "agents" }],
          grants: [{ connection: "c", actions: ["read"] }],
        },
      }),
    );
    assert.match(
      subject,
      /spec\.subjects\[0\]: Invalid value: "object": namespace is valid only for a ServiceAccount subject/,
    );
    const run = runManifest("bad-action", {
      access: [{ connection: "kb-postgres", actions: ["drop" as "read"] }],
    });
    const action = await rejection(createObject("admin", suite.ns.name, "langgraphruns", run));
    assert.match(action, /spec\.access\[0\]\.actions\[0\]: Unsupported value: "drop"/);
  });

  it("refuses a run without containers", async () => {
    const run = runManifest("no-containers");
    run.spec.template = { spec: { containers: [] } };
    const message = await rejection(createObject("admin", suite.ns.name, "langgraphruns", run));
    assert.match(
      message,
      /spec\.template\.spec\.containers: Invalid value: 0: spec\.template\.spec\.containers in body should have at least 1 items/,
    );
  });

  it("refuses a run with neither a template nor a source", async () => {
    const neither = runManifest("neither");
    delete neither.spec.template;
    assert.match(
      await rejection(createObject("admin", suite.ns.name, "langgraphruns", neither)),
      /spec: Invalid value: "object": a run has a template \(its Job is made from it\) or a source \(the tagged pod it records\), exactly one of them/,
    );
  });

  it("stores nothing that was refused", async () => {
    for (const plural of ["connections", "accesspolicies", "langgraphruns"]) {
      const list = (await customObjects().listNamespacedCustomObject({
        group: "langgraph-jit.dev",
        version: "v1alpha1",
        namespace: suite.ns.name,
        plural,
      })) as { items: unknown[] };
      assert.deepEqual(list.items, [], `no ${plural} were stored`);
    }
  });

  it("withholds what cannot be masked unless the grant says Pass, and knows no third way", async () => {
    const policy = (unmaskable?: string) => ({
      apiVersion,
      kind: "AccessPolicy",
      metadata: { name: `masking-${unmaskable ?? "default"}`.toLowerCase() },
      spec: {
        subjects: [{ kind: "Group", name: "g" }],
        grants: [
          {
            connection: "kb-api",
            actions: ["read"],
            masking: { detectors: ["email"], ...(unmaskable ? { unmaskable } : {}) },
          },
        ],
      },
    });
    const message = await rejection(
      createObject("admin", suite.ns.name, "accesspolicies", policy("Sometimes")),
    );
    assert.match(message, /spec\.grants\[0\]\.masking\.unmaskable: Unsupported value: "Sometimes"/);
    const stored = (await createObject(
      "admin",
      suite.ns.name,
      "accesspolicies",
      policy(),
    )) as AccessPolicy;
    assert.equal(stored.spec.grants[0]?.masking?.unmaskable, "Deny");
  });
});
