import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { maxQueryNameLength, maxQueryNames, queryNames } from "./session-events.ts";

describe("queryNames", () => {
  it("keeps a query's parameter names, in order and once, and never their values", () => {
    assert.deepEqual(queryNames("?export=all&page=2&export=csv&token"), [
      "export",
      "page",
      "token",
    ]);
    assert.deepEqual(queryNames("?a%20b=1"), ["a b"]);
  });

  it("has nothing to say of an empty query", () => {
    assert.equal(queryNames(""), undefined);
    assert.equal(queryNames("?"), undefined);
  });

  it("stays within what an event may carry", () => {
    const many = `?${Array.from({ length: 100 }, (_, i) => `p${i}=1`).join("&")}`;
    assert.equal(queryNames(many)?.length, maxQueryNames);
    const [long] = queryNames(`?${"n".repeat(1000)}=1`) ?? [];
    assert.equal(long?.length, maxQueryNameLength);
  });
});
