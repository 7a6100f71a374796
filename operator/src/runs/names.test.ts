import assert from "node:assert/strict";
import { test } from "node:test";
import { boundedName, envName } from "./names.ts";

test("keeps names that fit and shortens long ones uniquely within 63 characters", () => {
  assert.equal(boundedName("kb-refresh"), "kb-refresh");
  const long = `run-${"x".repeat(100)}`;
  const shortened = boundedName(long);
  assert.equal(shortened.length <= 63, true);
  assert.notEqual(shortened, boundedName(`${long}y`));
  assert.match(shortened, /^run-x+-[0-9a-f]{10}$/);
});

test("turns connection names into upper snake case", () => {
  assert.equal(envName("kb-postgres"), "KB_POSTGRES");
  assert.equal(envName("api.v2"), "API_V2");
});
