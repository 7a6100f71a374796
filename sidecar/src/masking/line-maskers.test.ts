// The line maskers: the same output however the body is split, lines held only up to the
// limit, and text that is not UTF-8 refused rather than passed.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JsonMasker } from "./json-masker.ts";
import { JsonLinesMasker, LineMaskingError, TextMasker } from "./line-maskers.ts";

/** Feeds body in random pieces; what the masker returns, joined. */
function feed(masker: TextMasker | JsonLinesMasker, body: Buffer): string {
  const out: Buffer[] = [];
  for (let at = 0; at < body.length; ) {
    const size = 1 + Math.floor(Math.random() * 9);
    out.push(masker.write(body.subarray(at, at + size)));
    at += size;
  }
  out.push(masker.end());
  return Buffer.concat(out).toString();
}

describe("TextMasker", () => {
  const body = Buffer.from("name,email,card\nAnn,ann@example.com,4111 1111 1111 1111\r\nBo,é,none");

  it("masks each line by the detectors the same way however the body is split", () => {
    for (let i = 0; i < 500; i++) {
      const masker = new TextMasker(["email", "credit-card"]);
      assert.equal(
        feed(masker, body),
        "name,email,card\nAnn,[MASKED:email],[MASKED:credit-card]\r\nBo,é,none",
      );
      assert.deepEqual(masker.counts, { email: 1, "credit-card": 1 });
    }
  });

  it("passes lines with nothing to mask byte for byte", () => {
    const plain = Buffer.from("a\n\nb  \r\n\tc");
    assert.equal(feed(new TextMasker(["email"]), plain), plain.toString());
  });

  it("refuses a line longer than it will hold, and text that is not UTF-8", () => {
    const masker = new TextMasker(["email"], 16);
    masker.write(Buffer.from("short line\n"));
    assert.throws(() => masker.write(Buffer.from("x".repeat(17))), LineMaskingError);
    assert.throws(
      () => new TextMasker(["email"]).write(Buffer.from([0x61, 0xff, 0x0a])),
      /line 1 is not UTF-8/,
    );
  });
});

describe("JsonLinesMasker", () => {
  const masker = () =>
    new JsonLinesMasker(() => new JsonMasker({ jsonPaths: ["$.ssn"], detectors: ["email"] }));

  it("masks every line as its own document, however the body is split", () => {
    const body = Buffer.from('{"ssn":"1","e":"a@b.example"}\n\n{"ssn":2}\n{"x":[1]}');
    for (let i = 0; i < 500; i++) {
      const lines = masker();
      assert.equal(
        feed(lines, body),
        '{"ssn":"[MASKED:json-path]","e":"[MASKED:email]"}\n\n{"ssn":"[MASKED:json-path]"}\n{"x":[1]}',
      );
      assert.deepEqual(lines.counts, { "json-path": 2, email: 1 });
    }
  });

  it("refuses a line that is not JSON, naming it", () => {
    const lines = masker();
    assert.throws(() => lines.write(Buffer.from('{"a":1}\n{"a":\n')), /line 2: invalid JSON/);
  });
});
