// Differential fuzzing of the streaming JSON masker against JSON.parse over strict UTF-8: the same
// bodies accepted, a body with nothing to mask copied byte for byte, selected values and detector
// matches masked as a whole-document reference masks them, whatever the chunking.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type DetectorName, detectorNames, maskString, redaction } from "./detectors.ts";
import {
  JsonMasker,
  type JsonMaskerOptions,
  JsonMaskingError,
  JsonMaskingLimitError,
} from "./json-masker.ts";
import { JsonPathMatcher, type PathKey } from "./json-path.ts";

/** The main differential property's cases (others scale from it): 10^5, 10^6 in `make fuzz`. */
const runs = Number(process.env.FUZZ_RUNS ?? 100_000);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

// RFC 8259 text is UTF-8 without a byte order mark: a BOM must reach JSON.parse (which refuses
// it) rather than be dropped by the decoder.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** What JSON.parse makes of bytes read as strict UTF-8; undefined where either refuses. */
function referenceParse(bytes: Uint8Array): { value: Json } | undefined {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
  try {
    return { value: JSON.parse(text) as Json };
  } catch {
    return undefined;
  }
}

type Outcome = { output: Buffer; counts: JsonMasker["counts"] } | { error: JsonMaskingError };

/** Masks bytes written in chunks cut at the given offsets, each chunk overwritten once written
 * (a proxy may reuse its buffers). */
function maskInChunks(bytes: Uint8Array, cuts: number[], options: JsonMaskerOptions): Outcome {
  const masker = new JsonMasker(options);
  const output: Buffer[] = [];
  let start = 0;
  try {
    for (const cut of [...cuts, bytes.length]) {
      const chunk = Buffer.from(bytes.subarray(start, cut));
      output.push(masker.write(chunk));
      chunk.fill(0x20);
      start = cut;
    }
    output.push(masker.end());
  } catch (error) {
    assert.ok(error instanceof JsonMaskingError, `not a JsonMaskingError: ${error}`);
    return { error };
  }
  return { output: Buffer.concat(output), counts: masker.counts };
}

/** Masks bytes in one chunk and in the given chunks, asserts both give the same output or the same
 * error, and returns it. */
function maskAnyChunking(bytes: Uint8Array, cuts: number[], options: JsonMaskerOptions): Outcome {
  const whole = maskInChunks(bytes, [], options);
  const chunked = maskInChunks(bytes, cuts, options);
  if ("error" in whole) {
    assert.ok("error" in chunked, `accepted only when cut at ${cuts}`);
    assert.equal(chunked.error.message, whole.error.message, `cut at ${cuts}`);
    assert.ok(!(whole.error instanceof JsonMaskingLimitError), whole.error.message);
  } else {
    assert.ok("output" in chunked, `refused only when cut at ${cuts}: ${chunked}`);
    assert.ok(chunked.output.equals(whole.output), `output changes when cut at ${cuts}`);
    assert.deepEqual(chunked.counts, whole.counts);
  }
  return whole;
}

/** The document with every outermost value matcher selects replaced, and how many were. */
function referenceMask(value: Json, matcher: JsonPathMatcher): { value: Json; count: number } {
  let count = 0;
  const walk = (node: Json, path: PathKey[]): Json => {
    if (matcher.matches(path)) {
      count++;
      return redaction("json-path");
    }
    if (Array.isArray(node)) return node.map((child, index) => walk(child, [...path, index]));
    if (node === null || typeof node !== "object") return node;
    return Object.fromEntries(
      Object.entries(node).map(([key, child]) => [key, walk(child, [...path, key])]),
    );
  };
  return { value: walk(value, []), count };
}

function mapStrings(value: Json, map: (text: string) => string): Json {
  if (typeof value === "string") return map(value);
  if (Array.isArray(value)) return value.map((child) => mapStrings(child, map));
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, child]) => [key, mapStrings(child, map)]),
  );
}

function* stringValues(value: Json): Generator<string> {
  if (typeof value === "string") yield value;
  else if (Array.isArray(value)) for (const child of value) yield* stringValues(child);
  else if (value !== null && typeof value === "object") {
    for (const child of Object.values(value)) yield* stringValues(child);
  }
}

// --- Spelling a JSON value: whitespace, escapes and number forms chosen by a list of numbers, so
// that fast-check shrinks the spelling along with the value.

class Choices {
  readonly #values: number[];
  #next = 0;

  constructor(values: number[]) {
    this.#values = values;
  }

  pick<T>(options: readonly T[]): T {
    const value =
      this.#values.length === 0 ? 0 : (this.#values[this.#next++ % this.#values.length] as number);
    return options[value % options.length] as T;
  }
}

const whitespace = ["", "", "", " ", "\n", "\t", "\r\n  ", "  "];
const shortEscapes: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "/": "\\/",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

function spell(value: Json, choices: Choices): string {
  const space = () => choices.pick(whitespace);
  if (value === null || typeof value === "boolean") return String(value);
  if (typeof value === "number") return spellNumber(value, choices);
  if (typeof value === "string") return spellString(value, choices);
  if (Array.isArray(value)) {
    const items = value.map((item) => `${space()}${spell(item, choices)}${space()}`);
    return items.length === 0 ? `[${space()}]` : `[${items.join(",")}]`;
  }
  const members = Object.entries(value).map(
    ([key, item]) =>
      `${space()}${spellString(key, choices)}${space()}:${space()}${spell(item, choices)}${space()}`,
  );
  return members.length === 0 ? `{${space()}}` : `{${members.join(",")}}`;
}

function spellNumber(value: number, choices: Choices): string {
  const plain = JSON.stringify(value);
  if (!Number.isSafeInteger(value)) return plain;
  return choices.pick([plain, `${plain}.0`, `${plain}e0`, `${plain}E+00`, `${plain}.500e-0`]);
}

function spellString(value: string, choices: Choices): string {
  let spelled = '"';
  for (const character of value) {
    const code = character.codePointAt(0) as number;
    const mustEscape =
      code < 0x20 || character === '"' || character === "\\" || (code >= 0xd800 && code <= 0xdfff);
    const forms = [unicodeEscape(character, choices.pick([false, true]))];
    const short = shortEscapes[character];
    if (short) forms.push(short);
    if (!mustEscape) forms.push(character, character, character);
    spelled += choices.pick(forms);
  }
  return `${spelled}"`;
}

function unicodeEscape(character: string, upperCase: boolean): string {
  let escaped = "";
  for (let index = 0; index < character.length; index++) {
    const hex = character.charCodeAt(index).toString(16).padStart(4, "0");
    escaped += `\\u${upperCase ? hex.toUpperCase() : hex}`;
  }
  return escaped;
}

// --- Arbitraries.

const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code));
const stringUnit = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom('"', "\\", "/", "é", "😀", "\u2028", "\u0000", "\n", "\ufeff"),
  },
  { weight: 1, arbitrary: codeUnit },
  { weight: 1, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
);
const jsonValue = fc.jsonValue({ maxDepth: 4, stringUnit }) as fc.Arbitrary<Json>;
// Plain numbers, made into a Choices (which keeps a cursor) where they are used: a shrunk
// counterexample then replays, and prints the picks.
const choices = fc.array(fc.nat({ max: 1000 }), { maxLength: 40 });
const spelled = fc.tuple(jsonValue, choices).map(([value, picks]) => {
  const chosen = new Choices(picks);
  return `${chosen.pick(whitespace)}${spell(value, chosen)}${chosen.pick(whitespace)}`;
});
const utf8 = (text: string) => Buffer.from(text, "utf8");

// Bytes that change what a JSON tokenizer does next, and bytes that are not UTF-8.
const interestingByte = fc.oneof(
  fc.constantFrom(...Buffer.from('{}[],:"\\ \n0-.eE+tfnu/')),
  fc.constantFrom(
    0x00,
    0x1f,
    0x7f,
    0x80,
    0xbf,
    0xc0,
    0xc3,
    0xe0,
    0xed,
    0xef,
    0xf0,
    0xf4,
    0xf5,
    0xff,
  ),
  fc.integer({ min: 0, max: 255 }),
);
const mutation = fc.tuple(
  fc.constantFrom("delete", "insert", "replace", "truncate", "repeat"),
  fc.nat(),
  interestingByte,
);
const mutated = fc
  .tuple(spelled, fc.array(mutation, { minLength: 1, maxLength: 3 }))
  .map(([text, mutations]) => {
    let bytes = utf8(text);
    for (const [kind, at, byte] of mutations) {
      const position = at % (bytes.length + 1);
      const before = bytes.subarray(0, position);
      const after = bytes.subarray(position);
      if (kind === "delete") bytes = Buffer.concat([before, after.subarray(1)]);
      else if (kind === "insert") bytes = Buffer.concat([before, Buffer.of(byte), after]);
      else if (kind === "replace")
        bytes = Buffer.concat([before, Buffer.of(byte), after.subarray(1)]);
      else if (kind === "truncate") bytes = before;
      else bytes = Buffer.concat([before, bytes.subarray(position, position + (byte % 8)), after]);
    }
    return bytes;
  });
const jsonishText = fc.string({
  unit: fc.constantFrom(...'{}[],:"\\ \t\n0123456789-+.eEtrufalsn\u00e9'),
  maxLength: 24,
});
const randomBytes = fc.uint8Array({ maxLength: 32 });
const codePoint = fc
  .oneof(
    fc.integer({ min: 0x20, max: 0x7ff }),
    fc.integer({ min: 0x800, max: 0xffff }),
    fc.integer({ min: 0x10000, max: 0x10ffff }),
    fc.constantFrom(0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfeff, 0xffff, 0x10000, 0x10ffff),
  )
  .filter((code) => code < 0xd800 || code > 0xdfff);
/** A lead byte and continuation bytes at the edges of what UTF-8 allows after it: overlong forms,
 * surrogates, code points past U+10FFFF, missing or extra continuations. */
const edgeSequence = fc
  .tuple(
    fc.constantFrom(
      0x80,
      0xc0,
      0xc1,
      0xc2,
      0xdf,
      0xe0,
      0xe1,
      0xed,
      0xee,
      0xef,
      0xf0,
      0xf3,
      0xf4,
      0xf5,
      0xff,
    ),
    fc.array(fc.constantFrom(0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0), { maxLength: 3 }),
  )
  .map(([lead, continuations]) => Buffer.from([lead, ...continuations]));
const stringContent = fc.oneof(
  { weight: 3, arbitrary: codePoint.map((code) => utf8(String.fromCodePoint(code))) },
  { weight: 2, arbitrary: edgeSequence },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        "\\u00e9",
        "\\uD83D\\uDE00",
        "\\udc00",
        "\\u12G4",
        "\\x",
        '\\"',
        "\\",
        '"',
        "\n",
      )
      .map(utf8),
  },
  { weight: 1, arbitrary: interestingByte.map((byte) => Buffer.of(byte)) },
);
/** Mostly valid UTF-8 with an edge case or two, inside a string value or a key. */
const quotedBytes = fc
  .tuple(fc.array(stringContent, { maxLength: 8 }), fc.boolean())
  .map(([content, asKey]) =>
    Buffer.concat([utf8(asKey ? '{"' : '["'), ...content, utf8(asKey ? '":1}' : '"]')]),
  );

const body: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: spelled.map(utf8) },
  { weight: 3, arbitrary: mutated },
  { weight: 1, arbitrary: fc.json({ maxDepth: 3 }).map(utf8) },
  { weight: 2, arbitrary: jsonishText.map(utf8) },
  { weight: 1, arbitrary: fc.string({ unit: codeUnit, maxLength: 16 }).map(utf8) },
  { weight: 1, arbitrary: randomBytes },
  { weight: 2, arbitrary: quotedBytes },
);

/** Offsets to cut a body at, anywhere: inside escapes, numbers, literals, UTF-8 sequences. */
const cuts = fc.array(fc.nat(), { maxLength: 4 });
const cutsIn = (bytes: Uint8Array, offsets: number[]) =>
  offsets.map((offset) => offset % (bytes.length + 1)).sort((a, b) => a - b);

describe("JsonMasker (fuzzed against JSON.parse)", () => {
  it("accepts what JSON.parse accepts, and copies it byte for byte when nothing is selected", () => {
    // A path that selects nothing in practice still makes the masker read and unescape keys.
    const optionSets: JsonMaskerOptions[] = [
      { jsonPaths: [], detectors: [] },
      { jsonPaths: ["$..['never selected 🔒']", "$.never[3]"], detectors: [] },
    ];
    fc.assert(
      fc.property(body, cuts, fc.constantFrom(...optionSets), (bytes, offsets, options) => {
        const reference = referenceParse(bytes);
        const outcome = maskAnyChunking(bytes, cutsIn(bytes, offsets), options);
        if (reference === undefined) {
          assert.ok("error" in outcome, `masked what JSON.parse refuses`);
          assert.ok(outcome.error.offset <= bytes.length, outcome.error.message);
          return;
        }
        assert.ok(
          "output" in outcome,
          `refused what JSON.parse accepts: ${"error" in outcome && outcome.error.message}`,
        );
        const matcher = new JsonPathMatcher(options.jsonPaths);
        if (referenceMask(reference.value, matcher).count === 0) {
          assert.ok(outcome.output.equals(bytes), "the output differs from the input");
          assert.deepEqual(outcome.counts, {});
        }
      }),
      { numRuns: runs },
    );
  });

  it("masks what jsonPaths select, as a reference masking the parsed document does", () => {
    const key = fc.constantFrom("a", "b", "secret", "x y", "0", "é", "__proto__");
    const documents = fc.letrec<{ value: Json }>((tie) => ({
      value: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        fc.oneof(
          fc.constant(null),
          fc.boolean(),
          fc.integer({ min: -5, max: 500 }),
          fc.string({ unit: stringUnit, maxLength: 4 }),
        ),
        fc.array(tie("value"), { maxLength: 4 }),
        fc
          .array(fc.tuple(key, tie("value")), { maxLength: 4 })
          .map((members): Json => Object.fromEntries(members)),
      ),
    })).value;
    const jsonPaths = fc.subarray(
      ["$..secret", "$.a[*].b", "$['a'][0]", "$.b..*", "$[1]", "$..['x y'][*]", "$", "$.*.*.a"],
      { maxLength: 3 },
    );
    fc.assert(
      fc.property(documents, choices, jsonPaths, cuts, (document, picks, paths, offsets) => {
        const bytes = utf8(spell(document, new Choices(picks)));
        const outcome = maskAnyChunking(bytes, cutsIn(bytes, offsets), {
          jsonPaths: paths,
          detectors: [],
        });
        assert.ok(
          "output" in outcome,
          `refused valid JSON: ${"error" in outcome && outcome.error.message}`,
        );
        const masked = referenceParse(outcome.output);
        assert.ok(masked, `the output is not JSON: ${outcome.output}`);
        const expected = referenceMask(
          JSON.parse(bytes.toString("utf8")) as Json,
          new JsonPathMatcher(paths),
        );
        assert.deepEqual(masked.value, expected.value);
        assert.deepEqual(
          outcome.counts,
          expected.count === 0 ? {} : { "json-path": expected.count },
        );
      }),
      { numRuns: runs },
    );
  });

  it("masks what detectors find in string values, never keys, as maskString does", () => {
    // Emails may be glued to one another ("a@b.cc_bob@example.com"); six units are too few for
    // two emails that are not pieces.
    const piece = fc.constantFrom(
      " bob@example.com ",
      "a.b+c@d-e.co",
      "bob@example.com",
      "@",
      ".",
      "x",
      "4111 1111 1111 1111",
      "+1 415 555 0132",
      "é",
      "\\",
      '"',
    );
    const text = fc.string({ unit: fc.oneof(piece, stringUnit), maxLength: 6 });
    const documents = fc.letrec<{ value: Json }>((tie) => ({
      value: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        fc.oneof(fc.constant(null), fc.integer(), text),
        fc.array(tie("value"), { maxLength: 4 }),
        fc
          .array(fc.tuple(text, tie("value")), { maxLength: 4 })
          .map((members): Json => Object.fromEntries(members)),
      ),
    })).value;
    const detectors = fc.subarray([...detectorNames], { minLength: 1 });
    fc.assert(
      fc.property(documents, choices, detectors, cuts, (document, picks, names, offsets) => {
        const bytes = utf8(spell(document, new Choices(picks)));
        const outcome = maskAnyChunking(bytes, cutsIn(bytes, offsets), {
          jsonPaths: [],
          detectors: names,
        });
        assert.ok(
          "output" in outcome,
          `refused valid JSON: ${"error" in outcome && outcome.error.message}`,
        );
        const masked = referenceParse(outcome.output);
        assert.ok(masked, `the output is not JSON: ${outcome.output}`);
        const counts: Partial<Record<DetectorName, number>> = {};
        const expected = mapStrings(JSON.parse(bytes.toString("utf8")) as Json, (value) => {
          const result = maskString(value, names);
          for (const [name, count] of Object.entries(result.counts) as [DetectorName, number][]) {
            counts[name] = (counts[name] ?? 0) + count;
          }
          return result.text;
        });
        assert.deepEqual(masked.value, expected);
        assert.deepEqual(outcome.counts, counts);
        if (names.includes("email")) {
          for (const value of stringValues(masked.value)) {
            assert.doesNotMatch(value, /[\w.%+-]@[A-Za-z0-9-]+\.[A-Za-z]{2}/, "an email was left");
          }
        }
      }),
      { numRuns: Math.ceil(runs / 2) },
    );
  });
});
