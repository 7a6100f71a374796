// Property-based and differential fuzzing of the JSONPath subset: the parser refuses only with
// JsonPathError and reads back what was written, and the one-key-at-a-time matcher selects the
// nodes a reference evaluator over the whole parsed document selects.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  JsonPathError,
  JsonPathMatcher,
  type JsonPathSegment,
  type JsonPathSelector,
  type JsonPathState,
  type PathKey,
  parseJsonPath,
} from "./json-path.ts";

/** The main differential property's cases (others scale from it): 10^5, 10^6 in `make fuzz`. */
const runs = Number(process.env.FUZZ_RUNS ?? 100_000);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The paths of the nodes segments select in root (RFC 9535 semantics, as a set). */
function referenceSelect(root: Json, segments: readonly JsonPathSegment[]): Set<string> {
  let nodes: [Json, PathKey[]][] = [[root, []]];
  for (const segment of segments) {
    const from = segment.descendant
      ? nodes.flatMap(([value, path]) => descendants(value, path))
      : nodes;
    nodes = from.flatMap(([value, path]) => children(value, path, segment.selector));
  }
  return new Set(nodes.map(([, path]) => JSON.stringify(path)));
}

function descendants(value: Json, path: PathKey[]): [Json, PathKey[]][] {
  const all: [Json, PathKey[]][] = [[value, path]];
  for (const [child, childPath] of children(value, path, { kind: "wildcard" })) {
    all.push(...descendants(child, childPath));
  }
  return all;
}

function children(value: Json, path: PathKey[], selector: JsonPathSelector): [Json, PathKey[]][] {
  if (Array.isArray(value)) {
    const indexed = value.map((child, index): [Json, PathKey[]] => [child, [...path, index]]);
    if (selector.kind === "wildcard") return indexed;
    return selector.kind === "index" && selector.index < value.length
      ? [indexed[selector.index] as [Json, PathKey[]]]
      : [];
  }
  if (value === null || typeof value !== "object") return [];
  const members = Object.entries(value).map(([key, child]): [Json, PathKey[]] => [
    child,
    [...path, key],
  ]);
  if (selector.kind === "wildcard") return members;
  return selector.kind === "name" && Object.hasOwn(value, selector.name)
    ? [[value[selector.name] as Json, [...path, selector.name]]]
    : [];
}

// Few names, so that expressions and documents meet; "__proto__" and "" are names like others.
const names = ["a", "b", "secret", "x-y", "é", "1", "0", "", "__proto__", "it's", 'q"', "\\"];
const name = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...names) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 4 }) },
);
const index = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 3 }) },
  { weight: 1, arbitrary: fc.maxSafeNat() },
);
const selector: fc.Arbitrary<JsonPathSelector> = fc.oneof(
  name.map((value) => ({ kind: "name" as const, name: value })),
  index.map((value) => ({ kind: "index" as const, index: value })),
  fc.constant({ kind: "wildcard" as const }),
);
const segments = fc.array(
  fc
    .tuple(fc.boolean(), selector)
    .map(([descendant, selected]): JsonPathSegment => ({ descendant, selector: selected })),
  { maxLength: 4 },
);

/** Writes segments back as an expression, choosing among the equivalent spellings. */
const expressionOf = (parsed: JsonPathSegment[]): fc.Arbitrary<string> =>
  fc.tuple(...parsed.map((segment) => spellings(segment))).map((spelled) => `$${spelled.join("")}`);

function spellings({ descendant, selector }: JsonPathSegment): fc.Arbitrary<string> {
  const dot = descendant ? ".." : ".";
  const bracketPrefix = descendant ? ".." : "";
  const forms: string[] = [];
  if (selector.kind === "wildcard") forms.push(`${dot}*`, `${bracketPrefix}[*]`);
  if (selector.kind === "index") forms.push(`${bracketPrefix}[${selector.index}]`);
  if (selector.kind === "name") {
    if (/^[A-Za-z_\u0080-\uffff][\w\u0080-\uffff-]*$/.test(selector.name)) {
      forms.push(`${dot}${selector.name}`);
    }
    for (const quote of ["'", '"']) {
      const escaped = selector.name.replace(/\\/g, "\\\\").replaceAll(quote, `\\${quote}`);
      forms.push(`${bracketPrefix}[${quote}${escaped}${quote}]`);
    }
  }
  return fc.constantFrom(...forms);
}

const leaf: fc.Arbitrary<Json> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -9, max: 99 }),
  fc.constantFrom(...names),
);
// Object.fromEntries defines "__proto__" as an own member, as JSON.parse does.
const documents = fc.letrec<{ value: Json; container: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    tie("container"),
    tie("container"),
  ),
  container: fc.oneof(
    fc.array(tie("value"), { maxLength: 4 }),
    fc
      .array(fc.tuple(name, tie("value")), { maxLength: 4 })
      .map((members): Json => Object.fromEntries(members)),
  ),
}));
/** Mostly a container with members, where paths have something to select. */
const document = fc.oneof(
  documents.value,
  fc.array(documents.value, { minLength: 1, maxLength: 4 }),
  fc
    .array(fc.tuple(name, documents.value), { minLength: 1, maxLength: 4 })
    .map((members): Json => Object.fromEntries(members)),
);

/** Every node of value with its path, in document order. */
function* nodesOf(value: Json, path: PathKey[] = []): Generator<PathKey[]> {
  yield path;
  for (const [child, childPath] of children(value, path, { kind: "wildcard" })) {
    yield* nodesOf(child, childPath);
  }
}

describe("parseJsonPath (fuzzed)", () => {
  it("refuses any string outside the subset with a JsonPathError, and only so", () => {
    const grammar = fc.constantFrom(..."$$$..[]]**'\"\\09-?:,a_é ");
    const text = fc.oneof(
      fc.string({ unit: grammar, maxLength: 12 }).map((rest) => `$${rest}`),
      fc.string({ unit: grammar, maxLength: 12 }),
      fc.string({ unit: "binary", maxLength: 12 }),
    );
    fc.assert(
      fc.property(text, (expression) => {
        try {
          parseJsonPath(expression);
        } catch (error) {
          assert.ok(error instanceof JsonPathError, `not a JsonPathError: ${error}`);
          assert.equal(error.expression, expression);
          assert.ok(error.position >= 0 && error.position <= expression.length, error.message);
        }
      }),
      { numRuns: Math.ceil(runs / 10) },
    );
  });

  it("reads back the segments of any expression written in any of its spellings", () => {
    const written = segments.chain((parsed) =>
      expressionOf(parsed).map((expression) => ({ parsed, expression })),
    );
    fc.assert(
      fc.property(written, ({ parsed, expression }) => {
        assert.deepEqual(parseJsonPath(expression), parsed);
      }),
      { numRuns: Math.ceil(runs / 10) },
    );
  });

  it("refuses a valid expression with a character inserted or removed, or parses it", () => {
    const mutated = fc
      .tuple(
        segments.chain(expressionOf),
        fc.nat(),
        fc.option(fc.constantFrom(..."$.[]*'\"\\0-?:,a "), { nil: undefined }),
      )
      .map(([expression, at, inserted]) => {
        const position = at % (expression.length + 1);
        return inserted === undefined
          ? expression.slice(0, position) + expression.slice(position + 1)
          : expression.slice(0, position) + inserted + expression.slice(position);
      });
    fc.assert(
      fc.property(mutated, (expression) => {
        try {
          parseJsonPath(expression);
        } catch (error) {
          assert.ok(error instanceof JsonPathError, `not a JsonPathError: ${error}`);
        }
      }),
      { numRuns: Math.ceil(runs / 10) },
    );
  });
});

describe("JsonPathMatcher (fuzzed)", () => {
  it("selects the nodes a reference evaluator over the parsed document selects", () => {
    const expressions = fc.array(segments.chain(expressionOf), { maxLength: 3 });
    fc.assert(
      fc.property(document, expressions, (root, written) => {
        const matcher = new JsonPathMatcher(written);
        const expected = new Set<string>();
        for (const expression of written) {
          for (const path of referenceSelect(root, parseJsonPath(expression))) expected.add(path);
        }
        const selected = new Set<string>();
        walk(matcher, root, [], matcher.start, false, selected);
        assert.deepEqual(selected, expected, `${written.join(" ")} on ${JSON.stringify(root)}`);
        for (const path of nodesOf(root)) {
          assert.equal(matcher.matches(path), expected.has(JSON.stringify(path)));
        }
      }),
      { numRuns: runs },
    );
  });
});

/** Steps the matcher down the document as the streaming masker does, collecting the selected
 * paths, and checks that nothing is selected below a state the matcher called dead. */
function walk(
  matcher: JsonPathMatcher,
  value: Json,
  path: PathKey[],
  state: JsonPathState,
  belowDead: boolean,
  selected: Set<string>,
): void {
  if (matcher.accepts(state)) {
    assert.ok(!belowDead, `${JSON.stringify(path)} is selected below a dead state`);
    selected.add(JSON.stringify(path));
  }
  const dead = belowDead || matcher.isDead(state);
  for (const [child, childPath] of children(value, path, { kind: "wildcard" })) {
    const key = childPath.at(-1) as PathKey;
    walk(matcher, child, childPath, matcher.step(state, key), dead, selected);
  }
}
