// The streaming JSON masker: jsonPaths mask whole values, detectors mask inside string values,
// everything else is copied byte for byte; any chunking gives the same output; bad or oversized
// input is refused with the byte offset.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DetectorName } from "./detectors.ts";
import {
  InvalidJsonError,
  JsonMasker,
  type JsonMaskerOptions,
  JsonMaskingError,
  JsonMaskingLimitError,
  maskJson,
} from "./json-masker.ts";
import { JsonPathError } from "./json-path.ts";

type Options = Partial<JsonMaskerOptions>;

function options(overrides: Options): JsonMaskerOptions {
  return { jsonPaths: [], detectors: [], ...overrides };
}

function mask(document: string | Buffer, overrides: Options = {}) {
  const { body, counts } = maskJson(Buffer.from(document), options(overrides));
  return { text: body.toString("utf8"), counts };
}

/** Writes the document cut at the given byte offsets, in chunks overwritten once written, and
 * returns the whole output. */
function maskInPieces(document: Buffer, cuts: number[], overrides: Options): string {
  const masker = new JsonMasker(options(overrides));
  const output: Buffer[] = [];
  let start = 0;
  for (const cut of [...cuts, document.length]) {
    const chunk = Buffer.from(document.subarray(start, cut));
    output.push(masker.write(chunk));
    // A proxy may reuse its buffers: the masker must not keep references into a written chunk.
    chunk.fill(0x20);
    start = cut;
  }
  output.push(masker.end());
  return Buffer.concat(output).toString("utf8");
}

function failure(document: string | Buffer, overrides: Options = {}, cuts: number[] = []) {
  try {
    maskInPieces(Buffer.from(document), cuts, overrides);
  } catch (error) {
    assert.ok(error instanceof JsonMaskingError, `a JsonMaskingError, got ${error}`);
    return error;
  }
  assert.fail(`${document} was masked`);
}

const allDetectors: DetectorName[] = ["email", "credit-card", "phone"];

// Escapes, a surrogate pair both escaped and raw, multi-byte UTF-8, every kind of value, odd
// whitespace, and a key that only matches its jsonPath once unescaped.
const richDocument = `{"items": [ {"email": "bob@example.com", "note": "card 4111 1111 1111 1111 \\u00e9 \\ud83d\\ude00 😀 ü", "n": -12.5e+3},
\t{"email" : {"nested": ["x", 1, true]}, "tags": ["a\\"b", "c\\\\d", "e\\/f"], "ok": false, "none": null}],
 "c\\u0061rd": "4111-1111-1111-1111", "empty": {}, "list": [ ], "zero": 0, "big": 1E-7 }\r\n`;
const richOptions: Options = { jsonPaths: ["$.items[*].email", "$.card"], detectors: allDetectors };
const richMasked = `{"items": [ {"email": "[MASKED:json-path]", "note": "card [MASKED:credit-card] é 😀 😀 ü", "n": -12.5e+3},
\t{"email" : "[MASKED:json-path]", "tags": ["a\\"b", "c\\\\d", "e\\/f"], "ok": false, "none": null}],
 "c\\u0061rd": "[MASKED:json-path]", "empty": {}, "list": [ ], "zero": 0, "big": 1E-7 }\r\n`;

describe("JsonMasker output", () => {
  it("masks selected values whole and detector matches in strings, and copies the rest", () => {
    assert.deepEqual(mask(richDocument, richOptions), {
      text: richMasked,
      counts: { "json-path": 3, "credit-card": 1 },
    });
  });

  it("copies a document with nothing to mask byte for byte", () => {
    const document = ` \t{ "a" :[1.0e+00,-0, "\\u0041\\n", {"b":{}} ,[ ]],\r\n"c":"é😀", "d" : null }  `;
    assert.equal(mask(document, { jsonPaths: ["$.x"], detectors: allDetectors }).text, document);
    assert.equal(mask(document).text, document);
  });

  it("replaces a selected object or array with its whole subtree", () => {
    const document = `{"keep": 1, "secret": {"deep": [1, {"x": "y"}], "more": "z"}, "list": [[1], [2]]}`;
    assert.deepEqual(mask(document, { jsonPaths: ["$.secret", "$.list[1]"] }), {
      text: `{"keep": 1, "secret": "[MASKED:json-path]", "list": [[1], "[MASKED:json-path]"]}`,
      counts: { "json-path": 2 },
    });
  });

  it("masks every kind of scalar a path selects", () => {
    const document = `[ "s" , -1.5e3 , true , false , null ]`;
    assert.equal(
      mask(document, { jsonPaths: ["$[*]"] }).text,
      `[ "[MASKED:json-path]" , "[MASKED:json-path]" , "[MASKED:json-path]" , "[MASKED:json-path]" , "[MASKED:json-path]" ]`,
    );
  });

  it("masks the whole document for $, keeping the whitespace around it", () => {
    assert.equal(mask(` {"a": [1]}\n`, { jsonPaths: ["$"] }).text, ` "[MASKED:json-path]"\n`);
    assert.equal(mask(` 42 `, { jsonPaths: ["$"] }).text, ` "[MASKED:json-path]" `);
  });

  it("masks descendants at any depth once, not again inside a masked value", () => {
    const document = `{"token": {"token": 1}, "a": [{"token": "t"}, {"b": {"token": null}}]}`;
    assert.deepEqual(mask(document, { jsonPaths: ["$..token"] }), {
      text: `{"token": "[MASKED:json-path]", "a": [{"token": "[MASKED:json-path]"}, {"b": {"token": "[MASKED:json-path]"}}]}`,
      counts: { "json-path": 3 },
    });
  });

  it("does not run detectors inside a value a path masked", () => {
    const document = `{"secret": {"card": "4111111111111111"}, "open": "4111111111111111"}`;
    assert.deepEqual(mask(document, { jsonPaths: ["$.secret"], detectors: ["credit-card"] }), {
      text: `{"secret": "[MASKED:json-path]", "open": "[MASKED:credit-card]"}`,
      counts: { "json-path": 1, "credit-card": 1 },
    });
  });

  it("masks detector matches in nested strings and re-encodes the rest of the string", () => {
    const document = `{"a": [{"b": "quote \\" slash \\\\ line\\n tab\\t bob@example.com \\u2028 end"}]}`;
    const { text, counts } = mask(document, { detectors: ["email"] });
    assert.deepEqual(JSON.parse(text), {
      a: [{ b: 'quote " slash \\ line\n tab\t [MASKED:email] \u2028 end' }],
    });
    assert.deepEqual(counts, { email: 1 });
  });

  it("finds sensitive values hidden behind escapes", () => {
    const document = `["bob\\u0040example.com", "4111\\u00201111 1111 1111", "\\u0034111111111111111"]`;
    const { text, counts } = mask(document, { detectors: ["email", "credit-card"] });
    assert.equal(
      text,
      `["[MASKED:email]","[MASKED:credit-card]","[MASKED:credit-card]"]`.replaceAll(",", ", "),
    );
    assert.deepEqual(counts, { email: 1, "credit-card": 2 });
  });

  it("keeps a lone escaped surrogate as an escape", () => {
    const { text } = mask(`["\\ud800 bob@example.com"]`, { detectors: ["email"] });
    assert.equal(text, `["\\ud800 [MASKED:email]"]`);
  });

  it("leaves object keys alone, even when a detector would match them", () => {
    const document = `{"bob@example.com": "bob@example.com"}`;
    assert.equal(
      mask(document, { detectors: ["email"] }).text,
      `{"bob@example.com": "[MASKED:email]"}`,
    );
  });

  it("matches paths by the unescaped key", () => {
    assert.equal(
      mask(`{"e\\u006dail": "x"}`, { jsonPaths: ["$.email"] }).text,
      `{"e\\u006dail": "[MASKED:json-path]"}`,
    );
  });

  it("masks a top-level string value", () => {
    assert.equal(
      mask(` "call +1 415 555 0132" `, { detectors: ["phone"] }).text,
      ` "call [MASKED:phone]" `,
    );
  });

  it("never lets a masked value into the output or the counts", () => {
    const { text, counts } = mask(richDocument, richOptions);
    for (const secret of ["bob@example.com", "4111", "nested"]) {
      assert.equal(text.includes(secret), false, secret);
      assert.equal(JSON.stringify(counts).includes(secret), false, secret);
    }
  });
});

describe("JsonMasker streaming", () => {
  it("gives the one-shot output for every split of a document into two chunks", () => {
    const documents: [string, Options][] = [
      [richDocument, richOptions],
      [` "call +1 415 555 0132 or bob@example.com" `, { detectors: allDetectors }],
      [` -0.5e10 `, { jsonPaths: ["$"] }],
      [`[12345, -0.5e-10, true, null, false, "😀\\ud83d\\ude00"]`, { jsonPaths: ["$[1]"] }],
      [`{"k\\u00e9y": {"a": 1}, "long-key-name": [1e5]}`, { jsonPaths: ["$['kéy'].a"] }],
    ];
    for (const [document, overrides] of documents) {
      const bytes = Buffer.from(document);
      const expected = mask(bytes, overrides).text;
      for (let cut = 0; cut <= bytes.length; cut++) {
        assert.equal(
          maskInPieces(bytes, [cut], overrides),
          expected,
          `cut at ${cut} of ${document}`,
        );
      }
    }
  });

  it("gives the one-shot output for every split of a document into three chunks", () => {
    const bytes = Buffer.from(`{"a": ["x@y.io", {"b": "é"}], "n": -1.5E+2}`);
    const overrides: Options = { jsonPaths: ["$.a[1].b"], detectors: ["email"] };
    const expected = mask(bytes, overrides).text;
    for (let first = 0; first <= bytes.length; first++) {
      for (let second = first; second <= bytes.length; second++) {
        assert.equal(
          maskInPieces(bytes, [first, second], overrides),
          expected,
          `${first}, ${second}`,
        );
      }
    }
  });

  it("gives the one-shot output one byte at a time", () => {
    const bytes = Buffer.from(richDocument);
    const cuts = Array.from({ length: bytes.length - 1 }, (_, index) => index + 1);
    assert.equal(maskInPieces(bytes, cuts, richOptions), richMasked);
  });

  it("returns output as soon as it is decided, holding only an inspected string", () => {
    const masker = new JsonMasker(options({ jsonPaths: ["$[3]"], detectors: ["email"] }));
    assert.equal(masker.write(Buffer.from(`[1, 2, "bob@exa`)).toString(), "[1, 2, ");
    assert.equal(
      masker.write(Buffer.from(`mple.com", {"a`)).toString(),
      `"[MASKED:email]", "[MASKED:json-path]"`,
    );
    assert.equal(masker.write(Buffer.from(`": 1}, 5]`)).toString(), ", 5]");
    assert.equal(masker.end().length, 0);
  });

  it("streams string values through unheld when no detector is on", () => {
    const masker = new JsonMasker(options({ jsonPaths: ["$.x"], maxStringBytes: 4 }));
    assert.equal(masker.write(Buffer.from(`["a long string`)).toString(), `["a long string`);
    assert.equal(masker.write(Buffer.from(` value"]`)).toString(), ` value"]`);
    masker.end();
  });

  it("adds up counts across chunks and hands out a copy", () => {
    const masker = new JsonMasker(options({ jsonPaths: ["$..id"], detectors: ["email"] }));
    masker.write(Buffer.from(`[{"id": 1, "m": "a@example.com"},`));
    masker.write(Buffer.from(`{"id": 2, "m": "b@example.com c@example.com"}]`));
    masker.end();
    const counts = masker.counts;
    assert.deepEqual(counts, { "json-path": 2, email: 3 });
    counts.email = 0;
    assert.equal(masker.counts.email, 3);
  });
});

describe("JsonMasker refusals", () => {
  it("refuses input that is not JSON, naming the byte offset", () => {
    const cases: [string | Buffer, number, RegExp][] = [
      [`{"a":1,}`, 7, /expected '"' to start a key, found "}"/],
      [`[1 2]`, 3, /expected "," or "]", found "2"/],
      [`{"a":1]`, 6, /expected "," or "}", found "]"/],
      [`{"a" 1}`, 5, /expected ":" after a key/],
      [`{"a":tru}`, 8, /expected the literal true/],
      [`[01]`, 2, /expected "," or "]", found "1"/],
      [`[1.x]`, 3, /expected a digit, found "x"/],
      [`["\\x"]`, 3, /expected an escape/],
      [`["\\u12G4"]`, 6, /hex digit/],
      [`["a\nb"]`, 3, /control character escaped, found byte 0x0a/],
      [Buffer.from([0x5b, 0x22, 0xc3, 0x28, 0x22, 0x5d]), 3, /invalid UTF-8/],
      [Buffer.from([0x5b, 0x22, 0xc0, 0x80, 0x22, 0x5d]), 2, /invalid UTF-8/],
      [Buffer.from([0x5b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x5d]), 3, /invalid UTF-8/],
      [Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), 0, /expected a value, found byte 0xef/],
      [`{} x`, 3, /expected nothing after the JSON value/],
      [`]`, 0, /expected a value/],
      [``, 0, /unexpected end of input before any JSON value/],
      [`-`, 1, /unexpected end of input inside a number/],
      [`1.`, 2, /unexpected end of input inside a number/],
      [`"abc`, 4, /unexpected end of input inside a string/],
      [`{"a":[1,2`, 9, /unexpected end of input inside an unclosed array/],
      [`nul`, 3, /unexpected end of input inside the literal null/],
    ];
    for (const [document, offset, problem] of cases) {
      const error = failure(document, { jsonPaths: ["$.a"], detectors: ["email"] });
      assert.ok(error instanceof InvalidJsonError, String(document));
      assert.equal(error.offset, offset, String(document));
      assert.match(
        error.message,
        new RegExp(`^invalid JSON at byte ${offset}: `),
        String(document),
      );
      assert.match(error.message, problem, String(document));
    }
  });

  it("names the same offset wherever the body is split", () => {
    const bytes = Buffer.from(`{"a": ["x", "bob@example.com"], "b": [1 2]}`);
    const offset = bytes.indexOf("2]");
    for (let cut = 0; cut <= bytes.length; cut++) {
      const error = failure(bytes, { detectors: ["email"] }, [cut]);
      assert.equal(error.offset, offset, `cut at ${cut}`);
      assert.equal(error.message, `invalid JSON at byte ${offset}: expected "," or "]", found "2"`);
    }
  });

  it("stays failed after an error", () => {
    const masker = new JsonMasker(options({}));
    assert.throws(() => masker.write(Buffer.from("[1,,")), InvalidJsonError);
    assert.throws(() => masker.write(Buffer.from("2]")), /invalid JSON at byte 3/);
    assert.throws(() => masker.end(), /invalid JSON at byte 3/);
  });

  it("refuses nesting deeper than maxDepth", () => {
    assert.equal(mask("[[[1]]]", { maxDepth: 3 }).text, "[[[1]]]");
    const error = failure(`{"a": [[[1]]]}`, { maxDepth: 3 });
    assert.ok(error instanceof JsonMaskingLimitError);
    assert.equal(error.limit, "maxDepth");
    assert.equal(error.offset, 8);
    assert.match(error.message, /nest deeper than maxDepth \(3\)/);
  });

  it("allows 256 levels of nesting by default and no more", () => {
    assert.doesNotThrow(() => mask(`${"[".repeat(256)}${"]".repeat(256)}`));
    assert.equal(failure(`${"[".repeat(257)}${"]".repeat(257)}`).offset, 256);
  });

  it("refuses a held string value longer than maxStringBytes, counting raw bytes", () => {
    const limited: Options = { detectors: ["email"], maxStringBytes: 8 };
    assert.equal(mask(`["12345678"]`, limited).text, `["12345678"]`);
    for (const document of [`["123456789"]`, `["\\u0041\\u0041"]`]) {
      const bytes = Buffer.from(document);
      for (let cut = 0; cut <= bytes.length; cut++) {
        const error = failure(bytes, limited, [cut]);
        assert.ok(error instanceof JsonMaskingLimitError, document);
        assert.equal(error.limit, "maxStringBytes");
        assert.equal(error.offset, 1, `${document} cut at ${cut}`);
        assert.match(error.message, /a string value is longer than maxStringBytes \(8 bytes\)/);
      }
    }
  });

  it("refuses a key longer than maxStringBytes only while a path may select below it", () => {
    const document = `{"123456789": {"123456789": "123456789"}}`;
    const error = failure(document, { jsonPaths: ["$.a"], maxStringBytes: 8 });
    assert.equal(error.offset, 1);
    assert.match(error.message, /a key is longer than maxStringBytes/);
    assert.equal(mask(document, { maxStringBytes: 8 }).text, document);
    assert.equal(
      mask(`{"a": {"123456789": 1}}`, { jsonPaths: ["$.a"], maxStringBytes: 8 }).text,
      `{"a": "[MASKED:json-path]"}`,
    );
  });
});

describe("JsonMasker options", () => {
  it("refuses a jsonPath outside the subset", () => {
    assert.throws(() => new JsonMasker(options({ jsonPaths: ["$.a[?(@.b)]"] })), JsonPathError);
  });

  it("refuses an unknown detector rather than masking less than asked", () => {
    const unknown = ["email", "ssn"] as DetectorName[];
    assert.throws(
      () => new JsonMasker(options({ detectors: unknown })),
      /unknown masking detector "ssn"/,
    );
  });

  it("refuses limits that are not positive integers", () => {
    assert.throws(
      () => new JsonMasker(options({ maxDepth: 0 })),
      /maxDepth must be a positive integer/,
    );
    assert.throws(() => new JsonMasker(options({ maxStringBytes: 1.5 })), /maxStringBytes must be/);
  });
});
