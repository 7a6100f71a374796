import assert from "node:assert/strict";
import { test } from "node:test";
import { rememberFor } from "./ttl-cache.ts";

test("answers repeated lookups from memory until the time is up", async () => {
  let clock = 0;
  let calls = 0;
  const lookup = rememberFor(
    1_000,
    async (host: string) => `${host}:${++calls}`,
    () => clock,
  );
  assert.equal(await lookup("a"), "a:1");
  assert.equal(await lookup("a"), "a:1");
  assert.equal(await lookup("b"), "b:2");
  clock = 1_001;
  assert.equal(await lookup("a"), "a:3");
});

test("does not remember failures", async () => {
  let calls = 0;
  const lookup = rememberFor(1_000, async () => {
    calls++;
    if (calls === 1) throw new Error("transient");
    return "ok";
  });
  await assert.rejects(lookup(), /transient/);
  await Promise.resolve();
  assert.equal(await lookup(), "ok");
});
