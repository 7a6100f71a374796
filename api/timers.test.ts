import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { maxTimerMs, timerDelay } from "./timers.ts";

describe("timerDelay", () => {
  it("keeps a delay a timer can wait", () => {
    assert.equal(timerDelay(1_500), 1_500);
  });

  it("clamps delays past 24.8 days, which Node would fire at once", () => {
    assert.equal(timerDelay(30 * 24 * 3600 * 1000), maxTimerMs);
    assert.equal(timerDelay(Number.POSITIVE_INFINITY), maxTimerMs);
  });

  it("waits nothing for a negative or NaN delay", () => {
    assert.equal(timerDelay(-5), 0);
    assert.equal(timerDelay(Number.NaN), 0);
  });
});
