// Property-based and differential fuzzing of the path normalizer: its invariants on any string,
// agreement with the WHATWG URL parser on the dot-segments both resolve, and the plain-path
// shortcut against the full normalization.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { maxPathSegments, normalizePath } from "./request-path.ts";

/** The main differential property's cases (others scale from it): 10^5, 10^6 in `make fuzz`. */
const runs = Number(process.env.FUZZ_RUNS ?? 100_000);

// Pieces that each reach a different branch: dot-segments plain and encoded, text that is only
// decoded (escapes, raw UTF-8 as Node hands it over in latin1, what NFKC folds into letters)...
const benignPiece = fc.constantFrom(
  ".",
  "..",
  "%2e",
  "%2E",
  ".%2e",
  "%2E.",
  "%2e%2E",
  "",
  "%41",
  "%20",
  "%25",
  "%C3%A9",
  "%E2%82%AC",
  "%EF%BC%A1",
  "\u00c3\u00a9",
  " ",
  "?",
  "#",
  "a",
  "b",
  "v1",
  "~",
  "!$&'()*+,=:@",
  "-_",
);
// ...and what is refused: separators and path parameters encoded or not, double encoding, bad
// escapes, invalid UTF-8, characters NFKC folds into dots or slashes, controls, non-latin1.
const hostilePiece = fc.constantFrom(
  ";",
  "..;",
  "%3B",
  "\\",
  "%5c",
  "%2F",
  "%2f",
  "%00",
  "%7F",
  "\t",
  "%252e",
  "%25%32%65",
  "%",
  "%z",
  "%4",
  "%C3",
  "%C3%28",
  "%ED%A0%80",
  "%F4%90%80%80",
  "%EF%BC%8E",
  "%EF%BC%8F",
  "%E2%80%A4",
  "%EF%B9%92",
  "\u00ff",
  "é",
  "．",
  "\u0100",
  "😀",
  "\ud800",
);
const piece = fc.oneof(
  { weight: 12, arbitrary: benignPiece },
  { weight: 1, arbitrary: hostilePiece },
);
const segment = fc.oneof(
  { weight: 10, arbitrary: fc.string({ unit: piece, maxLength: 3 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary-ascii", maxLength: 4 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 3 }) },
);
const pathLike = fc.array(segment, { maxLength: 8 }).map((segments) => `/${segments.join("/")}`);
const anyString = fc.oneof(
  { weight: 12, arbitrary: pathLike },
  { weight: 1, arbitrary: fc.string({ unit: piece, maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 12 }) },
  // Lone surrogates and every other UTF-16 code unit.
  {
    weight: 1,
    arbitrary: fc
      .string({
        unit: fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)),
      })
      .map((text) => `/${text}`),
  },
);

/** The pchar (RFC 3986) the normalizer leaves unencoded, and escapes. */
const encodedCharacters = /^(?:[A-Za-z0-9\-._~!$&'()*+,=:@/]|%[0-9A-F]{2})*$/;

describe("normalizePath (fuzzed)", () => {
  it("never throws, and gives a normalized, idempotent path or a reason", () => {
    fc.assert(
      fc.property(anyString, (raw) => {
        const result = normalizePath(raw);
        if (!result.ok) {
          assert.equal(typeof result.reason, "string");
          assert.ok(result.reason.length > 0, "a refusal without a reason");
          return;
        }
        const { path, encoded } = result;
        assert.ok(path.startsWith("/"), `${path} does not start with /`);
        const segments = path.split("/").slice(1);
        assert.ok(segments.length <= maxPathSegments + 1, `${path} has too many segments`);
        for (const [index, segment] of segments.entries()) {
          assert.ok(segment !== "." && segment !== "..", `${path} holds a dot-segment`);
          if (index < segments.length - 1) assert.notEqual(segment, "", `${path} holds //`);
          assert.ok(!holdsForbiddenCharacter(segment), `${path} holds a forbidden character`);
          assert.doesNotMatch(segment, /%[0-9a-fA-F]{2}/, `${path} is still percent-encoded`);
        }
        assert.match(encoded, encodedCharacters, `${encoded} is not encoded`);
        assert.equal(decodeURIComponent(encoded), path, `${encoded} does not decode to ${path}`);
        assert.deepEqual(normalizePath(encoded), result, `${encoded} normalizes differently`);
      }),
      { numRuns: runs },
    );
  });

  it("normalizes a plain path and its full normalization alike", () => {
    // A leading "." segment takes every path off the plain-path shortcut without changing it.
    const path = fc.oneof(pathLike, fc.string({ unit: fc.constantFrom("a", "/", ".", "~", ":") }));
    fc.assert(
      fc.property(path, (raw) => {
        fc.pre(raw.startsWith("/") && raw.split("/").length <= maxPathSegments);
        assert.deepEqual(normalizePath(`/.${raw}`), normalizePath(raw));
      }),
      { numRuns: Math.ceil(runs / 10) },
    );
  });

  it("resolves dot-segments as the WHATWG URL parser does, once duplicate slashes are dropped", () => {
    // Only characters both leave as they are, and "%2e" only where WHATWG reads it as a dot:
    // elsewhere WHATWG keeps escapes while the normalizer decodes them. WHATWG keeps empty
    // segments ("/a//.." is "/a/" there, "/" here), so runs of "/" are collapsed before it parses.
    const dotSegment = fc.constantFrom(".", "..", "%2e", "%2E", ".%2e", "%2E.", "%2e%2E");
    const word = fc.string({
      unit: fc.constantFrom(..."aZ09-._~!$&'()*+,=:@"),
      minLength: 1,
      maxLength: 4,
    });
    const whatwgPath = fc
      .array(fc.oneof(dotSegment, word, fc.constant("")), { maxLength: 10 })
      .map((segments) => `/${segments.join("/")}`);
    fc.assert(
      fc.property(whatwgPath, (raw) => {
        const result = normalizePath(raw);
        assert.ok(result.ok, `${raw} was refused: ${result.ok ? "" : result.reason}`);
        const pathname = new URL(`http://x${raw.replace(/\/+/g, "/")}`).pathname;
        assert.equal(result.path, pathname);
        assert.equal(result.encoded, pathname);
      }),
      { numRuns: runs },
    );
  });

  it("decodes ASCII paths as decodeURIComponent does, then resolves their dot-segments", () => {
    const ascii = fc
      .array(fc.string({ unit: fc.oneof(piece, fc.constantFrom("%41", "%2d", "%7e", "%20")) }), {
        maxLength: 6,
      })
      .map((segments) => `/${segments.join("/")}`)
      .filter((raw) => /^[\x20-\x7e]*$/.test(raw));
    fc.assert(
      fc.property(ascii, (raw) => {
        const result = normalizePath(raw);
        const reference = referenceSegments(raw);
        if (reference === undefined) {
          assert.ok(!result.ok, `${raw} was accepted as ${result.ok ? result.path : ""}`);
        } else if (result.ok) {
          assert.equal(result.path, `/${reference.join("/")}`);
        } else {
          // What decodes fine may still be refused, but only for what it decodes to.
          const decoded = raw.split("/").map((piece) => decodeURIComponent(piece));
          assert.ok(
            raw.includes("\\") || decoded.some(isRefusedDecodedSegment),
            `${raw} was refused: ${result.reason}`,
          );
        }
      }),
      { numRuns: Math.ceil(runs / 10) },
    );
  });
});

/** RFC 3986 remove_dot_segments over decodeURIComponent's segments, empty ones dropped;
 * undefined where a segment does not decode. */
function referenceSegments(raw: string): string[] | undefined {
  const output: string[] = [];
  const segments = raw.split("/").slice(1);
  for (const [index, segment] of segments.entries()) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return undefined;
    }
    const last = index === segments.length - 1;
    if (decoded === "..") output.pop();
    if (decoded === ".." || decoded === "." || decoded === "") {
      if (last) output.push("");
    } else {
      output.push(decoded);
    }
  }
  return output;
}

/** A decoded segment that would change shape after matching, or that some servers read apart. */
function isRefusedDecodedSegment(decoded: string): boolean {
  const folded = decoded.normalize("NFKC");
  return (
    holdsForbiddenCharacter(decoded) ||
    /%[0-9a-fA-F]{2}/.test(decoded) ||
    (folded !== decoded && /[./\\;%]/.test(folded))
  );
}

/** A separator, a path parameter or a control character. */
function holdsForbiddenCharacter(text: string): boolean {
  return [...text].some((character) => "/\\;\x7f".includes(character) || character < " ");
}
