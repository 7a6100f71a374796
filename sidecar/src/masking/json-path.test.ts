// The JSONPath subset parses to segments, refuses everything else with the expression and the
// position, and selects paths one key at a time.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JsonPathError, JsonPathMatcher, type PathKey, parseJsonPath } from "./json-path.ts";

function refusal(expression: string): JsonPathError {
  try {
    parseJsonPath(expression);
  } catch (error) {
    assert.ok(error instanceof JsonPathError, `a JsonPathError, got ${error}`);
    return error;
  }
  assert.fail(`${expression} was accepted`);
}

function selects(expressions: string[], path: PathKey[]): boolean {
  return new JsonPathMatcher(expressions).matches(path);
}

describe("parseJsonPath", () => {
  it("parses every supported form", () => {
    assert.deepEqual(parseJsonPath("$"), []);
    assert.deepEqual(parseJsonPath("$.items[*].email"), [
      { descendant: false, selector: { kind: "name", name: "items" } },
      { descendant: false, selector: { kind: "wildcard" } },
      { descendant: false, selector: { kind: "name", name: "email" } },
    ]);
    assert.deepEqual(parseJsonPath(`$['a b']["c'd"][12].*`), [
      { descendant: false, selector: { kind: "name", name: "a b" } },
      { descendant: false, selector: { kind: "name", name: "c'd" } },
      { descendant: false, selector: { kind: "index", index: 12 } },
      { descendant: false, selector: { kind: "wildcard" } },
    ]);
    assert.deepEqual(parseJsonPath("$..password..*..[0]"), [
      { descendant: true, selector: { kind: "name", name: "password" } },
      { descendant: true, selector: { kind: "wildcard" } },
      { descendant: true, selector: { kind: "index", index: 0 } },
    ]);
  });

  it("reads names with digits, dashes, underscores and non-ASCII letters, and quoted escapes", () => {
    assert.deepEqual(parseJsonPath("$.x_1-b.ÿname")[1]?.selector, { kind: "name", name: "ÿname" });
    assert.deepEqual(parseJsonPath("$.x_1-b")[0]?.selector, { kind: "name", name: "x_1-b" });
    assert.deepEqual(parseJsonPath(String.raw`$['it\'s \\ here']`)[0]?.selector, {
      kind: "name",
      name: "it's \\ here",
    });
  });

  it("refuses what it does not support, naming the expression and the position", () => {
    const cases: [string, number, RegExp][] = [
      ["items", 0, /starts with \$/],
      ["", 0, /starts with \$/],
      ["$.items[?(@.x)]", 8, /filters are not supported/],
      ["$.items[1:2]", 9, /slices are not supported/],
      ["$.items[:2]", 8, /slices are not supported/],
      ["$.items[0,1]", 9, /unions are not supported/],
      ["$.items[-1]", 8, /negative indices are not supported/],
      ["$.items[01]", 8, /leading zeros/],
      ["$.items[99999999999999999999]", 8, /too large/],
      ["$.", 2, /expected a member name or "\*"/],
      ["$..", 3, /expected a member name or "\*"/],
      ["$.1abc", 2, /expected a member name/],
      ["$['email", 8, /expected ' to end the name/],
      [String.raw`$['a\n']`, 4, /only \\' and \\\\ are escapes/],
      ["$[email]", 2, /inside brackets/],
      ["$.a b", 3, /expected "\.", "\.\." or "\["/],
      ["$[0", 3, /expected "]" to close the bracket/],
      ["$$", 1, /expected "\.", "\.\." or "\["/],
    ];
    for (const [expression, position, problem] of cases) {
      const error = refusal(expression);
      assert.equal(error.position, position, expression);
      assert.equal(error.expression, expression);
      assert.match(error.message, problem, expression);
      const prefix = `JSONPath ${JSON.stringify(expression)} at position ${position} (`;
      assert.ok(error.message.startsWith(prefix), error.message);
    }
  });
});

describe("JsonPathMatcher", () => {
  it("selects the members an expression names, and not their parents or children", () => {
    const expression = ["$.items[*].email"];
    assert.ok(selects(expression, ["items", 0, "email"]));
    assert.ok(selects(expression, ["items", 7, "email"]));
    assert.ok(selects(expression, ["items", "by-id", "email"]), "* also selects object members");
    assert.equal(selects(expression, ["items", 0, "name"]), false);
    assert.equal(selects(expression, ["items", 0]), false);
    assert.equal(selects(expression, ["items", 0, "email", "domain"]), false);
    assert.equal(selects(expression, ["email"]), false);
  });

  it("tells indices from names", () => {
    assert.ok(selects(["$.a[1]"], ["a", 1]));
    assert.equal(selects(["$.a[1]"], ["a", "1"]), false);
    assert.ok(selects(["$.a['1']"], ["a", "1"]));
    assert.equal(selects(["$.a['1']"], ["a", 1]), false);
  });

  it("selects descendants at any depth, the root's children included", () => {
    const expression = ["$..password"];
    assert.ok(selects(expression, ["password"]));
    assert.ok(selects(expression, ["users", 3, "credentials", "password"]));
    assert.equal(selects(expression, ["users", 3, "passwords"]), false);
    assert.ok(selects(["$.users..token..value"], ["users", 0, "token", "a", "b", "value"]));
    assert.equal(selects(["$.users..token..value"], ["admins", "token", "value"]), false);
  });

  it("selects the root only with $", () => {
    assert.ok(selects(["$"], []));
    assert.equal(selects(["$"], ["a"]), false);
    assert.equal(selects(["$.a"], []), false);
  });

  it("selects a path any of several expressions selects", () => {
    const expressions = ["$.a.b", "$..c", "$.d[0]"];
    assert.ok(selects(expressions, ["a", "b"]));
    assert.ok(selects(expressions, ["x", "c"]));
    assert.ok(selects(expressions, ["d", 0]));
    assert.equal(selects(expressions, ["d", 1]), false);
    assert.equal(selects([], []), false);
  });

  it("steps one key at a time and knows when nothing below can match", () => {
    const matcher = new JsonPathMatcher(["$.items[*].email"]);
    const items = matcher.step(matcher.start, "items");
    assert.equal(matcher.isDead(items), false);
    const other = matcher.step(matcher.start, "other");
    assert.ok(matcher.isDead(other));
    assert.ok(matcher.isDead(matcher.step(other, "email")));
    const email = matcher.step(matcher.step(items, 2), "email");
    assert.ok(matcher.accepts(email));
    assert.ok(matcher.isDead(email), "nothing below a selected value is selected itself");
    const empty = new JsonPathMatcher([]);
    assert.ok(empty.isDead(empty.start));
    const anywhere = new JsonPathMatcher(["$..x"]);
    assert.equal(anywhere.isDead(anywhere.step(anywhere.start, "y")), false);
  });

  it("refuses an unsupported expression when compiled", () => {
    assert.throws(() => new JsonPathMatcher(["$.ok", "$.bad[?(@)]"]), JsonPathError);
  });
});
