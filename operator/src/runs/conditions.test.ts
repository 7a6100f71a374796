import assert from "node:assert/strict";
import { test } from "node:test";
import { setCondition } from "./conditions.ts";

const t0 = "2026-11-28T10:00:00Z";
const t1 = "2026-11-28T10:05:00Z";

test("adds a condition with the current time and generation", () => {
  const [ready] = setCondition(
    [],
    { type: "Ready", status: "False", reason: "Pending", message: "m" },
    1,
    t0,
  );
  assert.deepEqual(ready, {
    type: "Ready",
    status: "False",
    reason: "Pending",
    message: "m",
    observedGeneration: 1,
    lastTransitionTime: t0,
  });
});

test("keeps lastTransitionTime while the status stays the same", () => {
  const first = setCondition(
    [],
    { type: "Ready", status: "False", reason: "Pending", message: "a" },
    1,
    t0,
  );
  const [again] = setCondition(
    first,
    { type: "Ready", status: "False", reason: "Waiting", message: "b" },
    2,
    t1,
  );
  assert.equal(again?.lastTransitionTime, t0);
  assert.equal(again?.reason, "Waiting");
  assert.equal(again?.observedGeneration, 2);
});

test("moves lastTransitionTime when the status flips, leaving other conditions alone", () => {
  const start = setCondition(
    setCondition([], { type: "Authorized", status: "True", reason: "Granted", message: "" }, 1, t0),
    { type: "Ready", status: "False", reason: "Pending", message: "" },
    1,
    t0,
  );
  const next = setCondition(
    start,
    { type: "Ready", status: "True", reason: "Running", message: "" },
    1,
    t1,
  );
  assert.equal(next.find((c) => c.type === "Ready")?.lastTransitionTime, t1);
  assert.equal(next.find((c) => c.type === "Authorized")?.lastTransitionTime, t0);
  assert.equal(next.length, 2);
});
