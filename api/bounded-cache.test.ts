import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BoundedCache } from "./bounded-cache.ts";

describe("BoundedCache", () => {
  it("returns what was set, and nothing for a key never set or deleted", () => {
    const cache = new BoundedCache<string, number>({ maxEntries: 4 });
    cache.set("a", 1);
    cache.set("a", 2);
    assert.equal(cache.get("a"), 2);
    assert.equal(cache.has("a"), true);
    assert.equal(cache.get("b"), undefined);
    assert.equal(cache.has("b"), false);
    assert.equal(cache.delete("a"), true);
    assert.equal(cache.get("a"), undefined);
    assert.equal(cache.size, 0);
  });

  it("evicts the least recently set entry when full", () => {
    const cache = new BoundedCache<string, number>({ maxEntries: 2 });
    cache.set("a", 1);
    cache.set("b", 2);
    cache.set("c", 3);
    assert.equal(cache.size, 2);
    assert.equal(cache.get("a"), undefined);
    assert.equal(cache.get("b"), 2);
    assert.equal(cache.get("c"), 3);
  });

  it("counts a get or has as a use, so the entry looked up outlives the others", () => {
    const cache = new BoundedCache<string, number>({ maxEntries: 3 });
    cache.set("a", 1);
    cache.set("b", 2);
    cache.set("c", 3);
    assert.equal(cache.get("a"), 1);
    assert.equal(cache.has("b"), true);
    cache.set("d", 4); // c is now the least recently used
    assert.equal(cache.get("c"), undefined);
    cache.set("e", 5); // then a
    assert.equal(cache.get("a"), undefined);
    assert.deepEqual(
      ["b", "d", "e"].map((key) => cache.get(key)),
      [2, 4, 5],
    );
  });

  it("does not evict when a full cache sets a key it holds", () => {
    const cache = new BoundedCache<string, number>({ maxEntries: 2 });
    cache.set("a", 1);
    cache.set("b", 2);
    cache.set("a", 10); // replaces, and makes b the least recently used
    assert.equal(cache.size, 2);
    assert.equal(cache.get("b"), 2);
    cache.set("c", 3);
    assert.equal(cache.get("a"), undefined);
    assert.equal(cache.get("b"), 2);
    assert.equal(cache.get("c"), 3);
  });

  it("treats an entry past its time to live as absent and drops it", () => {
    let clock = 1_000;
    const cache = new BoundedCache<string, number>({ maxEntries: 4, ttlMs: 100, now: () => clock });
    cache.set("a", 1);
    clock = 1_050;
    cache.set("b", 2);
    clock = 1_099;
    assert.equal(cache.get("a"), 1, "a get does not extend the time to live");
    clock = 1_100;
    assert.equal(cache.get("a"), undefined);
    assert.equal(cache.has("b"), true);
    assert.equal(cache.size, 1, "the expired entry is gone, not only hidden");
    clock = 1_150;
    assert.equal(cache.has("b"), false);
    assert.equal(cache.size, 0);
  });

  it("restarts the time to live when a key is set again", () => {
    let clock = 0;
    const cache = new BoundedCache<string, number>({ maxEntries: 4, ttlMs: 100, now: () => clock });
    cache.set("a", 1);
    clock = 90;
    cache.set("a", 2);
    clock = 150;
    assert.equal(cache.get("a"), 2);
  });

  it("keeps an entry for the time to live set gives it, shorter or longer than the cache's", () => {
    let clock = 0;
    const cache = new BoundedCache<string, number>({ maxEntries: 4, ttlMs: 100, now: () => clock });
    cache.set("short", 1, 10);
    cache.set("long", 2, 1_000);
    cache.set("default", 3);
    clock = 10;
    assert.equal(cache.get("short"), undefined);
    assert.equal(cache.get("default"), 3);
    clock = 100;
    assert.equal(cache.get("default"), undefined);
    assert.equal(cache.get("long"), 2);
    clock = 1_000;
    assert.equal(cache.get("long"), undefined);
  });

  it("stores nothing for a time to live of 0 or less, and drops the key's old value", () => {
    const cache = new BoundedCache<string, number>({ maxEntries: 1, ttlMs: 100, now: () => 0 });
    cache.set("a", 1);
    cache.set("b", 2, 0);
    assert.equal(cache.get("a"), 1, "a value that would expire at once evicts nothing");
    cache.set("a", 3, -5);
    assert.equal(cache.get("a"), undefined);
    assert.equal(cache.size, 0);
  });

  it("keeps entries without a time to live however far the clock runs", () => {
    let clock = 0;
    const cache = new BoundedCache<string, number>({ maxEntries: 1, now: () => clock });
    cache.set("a", 1);
    clock = Number.MAX_SAFE_INTEGER;
    assert.equal(cache.get("a"), 1);
  });

  it("refuses a capacity or time to live it could not honour", () => {
    for (const maxEntries of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => new BoundedCache({ maxEntries }), RangeError);
    }
    for (const ttlMs of [0, -1, Number.NaN]) {
      assert.throws(() => new BoundedCache({ maxEntries: 1, ttlMs }), RangeError);
    }
  });
});
