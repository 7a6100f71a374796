import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backoffDelay } from "./backoff.ts";
import { maxTimerMs } from "./timers.ts";

describe("backoffDelay", () => {
  const backoff = { initialMs: 200, maxMs: 5_000 };

  it("doubles its ceiling with each attempt up to the cap", () => {
    const ceilings = [0, 1, 2, 3, 4, 5, 6].map((attempt) =>
      backoffDelay(attempt, backoff, () => 1),
    );
    assert.deepEqual(ceilings, [200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
  });

  it("jitters within the upper half of the ceiling", () => {
    assert.equal(
      backoffDelay(0, backoff, () => 0),
      100,
    );
    assert.equal(
      backoffDelay(10, backoff, () => 0),
      2_500,
    );
    for (let i = 0; i < 1_000; i++) {
      const delay = backoffDelay(3, backoff);
      assert.ok(delay >= 800 && delay <= 1_600, `${delay} ms is outside [800, 1600]`);
    }
  });

  it("stays capped for huge attempt counts and treats negative ones as the first", () => {
    assert.equal(
      backoffDelay(5_000, backoff, () => 1),
      5_000,
    );
    assert.equal(
      backoffDelay(-3, backoff, () => 1),
      200,
    );
  });

  it("never asks a timer for more than it can wait", () => {
    assert.equal(
      backoffDelay(60, { initialMs: 1_000, maxMs: Number.POSITIVE_INFINITY }, () => 1),
      maxTimerMs,
    );
  });
});
