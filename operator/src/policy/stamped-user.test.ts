import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { alice, testRun } from "../testing/runs.ts";
import { stampedUser } from "./stamped-user.ts";

const stamp = JSON.stringify(alice);

function run(annotations?: Record<string, string>): LangGraphRun {
  return testRun(annotations ? { annotations } : {});
}

const requesterOf = (obj: LangGraphRun) => stampedUser(obj, "langgraph-jit.dev/requester");

describe("stampedUser", () => {
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
