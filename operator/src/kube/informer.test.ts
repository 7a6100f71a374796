import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { objectKey } from "./informer.ts";

describe("objectKey", () => {
  it("is namespace/name, or the name alone for cluster-scoped objects", () => {
    assert.equal(objectKey({ metadata: { namespace: "agents", name: "run-1" } }), "agents/run-1");
    assert.equal(objectKey({ metadata: { name: "cluster-wide" } }), "cluster-wide");
  });
});
