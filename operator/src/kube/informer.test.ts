import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { jitteredBackoffMs, objectKey } from "./informer.ts";

describe("jitteredBackoffMs", () => {
  it("doubles its ceiling with each attempt until the cap", () => {
    const ceilings = [1, 2, 3, 4, 5, 6, 7].map((attempt) =>
      jitteredBackoffMs(attempt, 1_000, 30_000, () => 0.999_999),
    );
    assert.deepEqual(ceilings, [999, 1_999, 3_999, 7_999, 15_999, 29_999, 29_999]);
  });

  it("draws the whole range from zero up to the ceiling (full jitter)", () => {
    assert.equal(
      jitteredBackoffMs(3, 1_000, 30_000, () => 0),
      0,
    );
    assert.equal(
      jitteredBackoffMs(3, 1_000, 30_000, () => 0.5),
      2_000,
    );
    for (let i = 0; i < 1_000; i++) {
      const delay = jitteredBackoffMs(4, 100, 30_000);
      assert.ok(delay >= 0 && delay < 800, `${delay} ms is outside [0, 800)`);
    }
  });

  it("stays capped for very large attempt counts", () => {
    assert.equal(
      jitteredBackoffMs(5_000, 1_000, 30_000, () => 0.5),
      15_000,
    );
  });

  it("treats attempts below one as the first", () => {
    assert.equal(
      jitteredBackoffMs(0, 1_000, 30_000, () => 0.5),
      500,
    );
  });
});

describe("objectKey", () => {
  it("is namespace/name, or the name alone for cluster-scoped objects", () => {
    assert.equal(objectKey({ metadata: { namespace: "agents", name: "run-1" } }), "agents/run-1");
    assert.equal(objectKey({ metadata: { name: "cluster-wide" } }), "cluster-wide");
  });
});
