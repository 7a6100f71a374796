import assert from "node:assert/strict";
import { test } from "node:test";
import { formatDuration, parseDuration } from "./duration.ts";

test("parses Go-style durations into milliseconds", () => {
  assert.equal(parseDuration("30m"), 1_800_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("1.5h"), 5_400_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("2s500ms"), 2_500);
});

test("rejects text that is not a duration, naming it", () => {
  for (const bad of ["", "30", "m", "1d", "-5m", "1h 30m", "five minutes"]) {
    assert.throws(() => parseDuration(bad), new RegExp(`"${bad}" is not a duration`));
  }
});

test("formats milliseconds back into a short duration", () => {
  assert.equal(formatDuration(5_400_000), "1h30m");
  assert.equal(formatDuration(45_000), "45s");
  assert.equal(formatDuration(0), "0ms");
  assert.equal(formatDuration(3_600_000), "1h");
});
