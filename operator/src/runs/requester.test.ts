import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { requesterOf } from "./requester.ts";

const alice = {
  username: "alice@example.com",
  uid: "a-1",
  groups: ["ml-platform", "system:authenticated"],
};
const stamp = JSON.stringify(alice);

function run(annotations?: Record<string, string>): LangGraphRun {
  return {
    metadata: { name: "r", namespace: "agents", ...(annotations ? { annotations } : {}) },
    spec: {
      template: { spec: { containers: [{ name: "graph", image: "g" }] } },
      access: [{ connection: "kb-postgres", actions: ["read"] }],
      maxDuration: "30m",
    },
  };
}

describe("requesterOf", () => {
  it("reads a stamped requester and rejects malformed ones", () => {
    assert.deepEqual(requesterOf(run({ "langgraph-jit.dev/requester": stamp })), alice);
    assert.equal(requesterOf(run({ "langgraph-jit.dev/requester": "{not json" })), undefined);
    assert.equal(requesterOf(run({ "langgraph-jit.dev/requester": "{}" })), undefined);
    assert.equal(requesterOf(run()), undefined);
    const extra = { a: ["1"] };
    const withExtra = JSON.stringify({ ...alice, extra });
    assert.deepEqual(requesterOf(run({ "langgraph-jit.dev/requester": withExtra })), {
      ...alice,
      extra,
    });
    const badExtra = JSON.stringify({ ...alice, extra: { a: [1] } });
    assert.equal(requesterOf(run({ "langgraph-jit.dev/requester": badExtra })), undefined);
  });
});
