import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ObjectStore, objectKey } from "./object-store.ts";

const object = (namespace: string | undefined, name: string, version = "1") => ({
  metadata: { ...(namespace ? { namespace } : {}), name, resourceVersion: version },
});

describe("objectKey", () => {
  it("is namespace/name, or the name alone for cluster-scoped objects", () => {
    assert.equal(objectKey({ metadata: { namespace: "agents", name: "run-1" } }), "agents/run-1");
    assert.equal(objectKey({ metadata: { name: "langgraph-jit" } }), "langgraph-jit");
  });
});

describe("ObjectStore", () => {
  it("lists a namespace's objects from its index, and every object without one", () => {
    const store = new ObjectStore();
    for (const obj of [
      object("a", "x"),
      object("a", "y"),
      object("b", "x"),
      object(undefined, "c"),
    ])
      store.set(obj);
    assert.deepEqual(store.list("a").map(objectKey), ["a/x", "a/y"]);
    assert.deepEqual(store.list("").map(objectKey), ["c"]);
    assert.deepEqual(store.list("none"), []);
    assert.equal(store.list().length, 4);
    assert.equal(store.size, 4);
  });

  it("replaces an object in place and forgets a deleted one in both maps", () => {
    const store = new ObjectStore();
    store.set(object("a", "x", "1"));
    store.set(object("a", "x", "2"));
    assert.equal(store.list("a").length, 1);
    assert.equal(store.get("a/x")?.metadata?.resourceVersion, "2");
    assert.equal(store.delete(object("a", "x")), true);
    assert.equal(store.delete(object("a", "x")), false, "deleting twice reports nothing held");
    assert.deepEqual(store.list("a"), []);
    assert.equal(store.get("a/x"), undefined);
    assert.equal(store.size, 0);
  });
});
