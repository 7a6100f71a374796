// Property-based fuzzing of the path globs against a reference matcher written from their
// documented semantics, and of their running time on patterns built to backtrack.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { compileGlob } from "./rules.ts";

/** The main differential property's cases (others scale from it): 10^5, 10^6 in `make fuzz`. */
const runs = Number(process.env.FUZZ_RUNS ?? 100_000);

/** `**` any number of whole segments, `*` any characters but "/" within one, the rest literal;
 * a plain backtracking matcher, exponential and obviously right on small inputs. */
function referenceMatch(pattern: string, segments: string[]): boolean {
  const parts = pattern.split("/").filter((part) => part !== "");
  const matchParts = (p: number, s: number): boolean => {
    const part = parts[p];
    if (part === undefined) return s === segments.length;
    if (part === "**") {
      for (let next = s; next <= segments.length; next++) {
        if (matchParts(p + 1, next)) return true;
      }
      return false;
    }
    const segment = segments[s];
    return segment !== undefined && matchChars(part, 0, segment, 0) && matchParts(p + 1, s + 1);
  };
  return matchParts(0, 0);
}

function matchChars(part: string, p: number, segment: string, s: number): boolean {
  if (p === part.length) return s === segment.length;
  if (part[p] === "*") {
    for (let next = s; next <= segment.length; next++) {
      if (matchChars(part, p + 1, segment, next)) return true;
      if (segment[next] === "/") return false;
    }
    return false;
  }
  return s < segment.length && part[p] === segment[s] && matchChars(part, p + 1, segment, s + 1);
}

// Few characters, so that patterns and paths often (almost) match; regex metacharacters, since
// a matcher built on a regex must take them literally.
const character = fc.constantFrom("a", "b", "a", "b", ".", "(", "+", "\\", "$", "[", "é", "😀");
const literal = fc.string({ unit: character, minLength: 1, maxLength: 3 });
const segment = fc.oneof(
  literal,
  fc.string({ unit: fc.oneof(character, fc.constant("*")), minLength: 1, maxLength: 4 }),
  fc.string({ unit: "binary", minLength: 1, maxLength: 3 }).filter((text) => !text.includes("/")),
);
const patternPart = fc.oneof(
  { weight: 2, arbitrary: fc.constant("**") },
  { weight: 1, arbitrary: fc.constant("*") },
  {
    weight: 4,
    arbitrary: fc.string({ unit: fc.oneof(character, fc.constant("*")), maxLength: 5 }),
  },
);
const pattern = fc
  .tuple(fc.array(patternPart, { maxLength: 6 }), fc.constantFrom("/", "//", ""), fc.boolean())
  .map(([parts, separator, trailing]) => `/${parts.join(separator)}${trailing ? "/" : ""}`);
const segments = fc.array(segment, { maxLength: 7 });

describe("path globs (fuzzed)", () => {
  it("match exactly what the reference matcher matches", () => {
    fc.assert(
      fc.property(pattern, segments, (glob, path) => {
        assert.equal(compileGlob(glob)(path), referenceMatch(glob, path));
      }),
      { numRuns: runs },
    );
  });

  it("match a path built from the pattern itself", () => {
    // Random pairs mostly do not match: fill each wildcard to get the matching case as often.
    const filled = fc
      .array(fc.tuple(patternPart, fc.array(literal, { maxLength: 3 })), { maxLength: 6 })
      .map((parts) => ({
        glob: `/${parts.map(([part]) => part).join("/")}`,
        path: parts.flatMap(([part, fill]) =>
          part === "**" ? fill : [part.replaceAll("*", fill.join(""))],
        ),
      }))
      .filter(({ path }) => path.every((piece) => piece !== ""));
    fc.assert(
      fc.property(filled, ({ glob, path }) => {
        assert.ok(compileGlob(glob)(path), `${glob} does not match /${path.join("/")}`);
      }),
      { numRuns: Math.ceil(runs / 10) },
    );
  });

  it("stay fast on patterns with many * and ** against long paths that do not match", () => {
    const manyWildcards = fc
      .array(fc.constantFrom("**", "**", "*", "*a*", "a*a", "*a*a*a*a*", "*a*a*a*a*b"), {
        minLength: 10,
        maxLength: 40,
      })
      .map((parts) => `/${parts.join("/")}/*b`);
    const longPath = fc.tuple(
      fc.integer({ min: 100, max: 400 }),
      fc.integer({ min: 50, max: 300 }),
    );
    fc.assert(
      fc.property(manyWildcards, longPath, (glob, [count, length]) => {
        const path = Array.from({ length: count }, () => "a".repeat(length));
        const started = performance.now();
        assert.equal(compileGlob(glob)(path), false);
        const took = performance.now() - started;
        assert.ok(took < 250, `${glob} took ${took.toFixed(0)} ms on ${count} segments`);
      }),
      { numRuns: Math.max(100, Math.ceil(runs / 1000)) },
    );
  });
});
