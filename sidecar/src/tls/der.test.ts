// The DER encoder against encodings worked out by hand from X.690 and RFC 5280.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as der from "./der.ts";

const hex = (encoding: der.Der) => encoding.toString("hex");

test("encodes object identifiers in base 128, the first two arcs combined", () => {
  assert.equal(hex(der.objectIdentifier("1.2.840.10045.4.3.2")), "06082a8648ce3d040302");
  assert.equal(hex(der.objectIdentifier("2.5.29.19")), "0603551d13");
  assert.throws(() => der.objectIdentifier("1.40.1"), /"1.40.1" is not an object identifier/);
  assert.throws(() => der.objectIdentifier("2"), /"2" is not an object identifier/);
  assert.throws(() => der.objectIdentifier("1..2"), /"1..2" is not an object identifier/);
  assert.throws(() => der.objectIdentifier("3.1"), /"3.1" is not an object identifier/);
});

test("encodes unsigned integers in their shortest positive form", () => {
  assert.equal(hex(der.unsignedInteger(Buffer.from("000080", "hex"))), "02020080");
  assert.equal(hex(der.unsignedInteger(Buffer.from("0001", "hex"))), "020101");
  assert.equal(hex(der.unsignedInteger(Buffer.alloc(0))), "020100");
  assert.equal(hex(der.smallInteger(0)), "020100");
  assert.equal(hex(der.smallInteger(2)), "020102");
  assert.equal(hex(der.smallInteger(0xffff)), "020300ffff");
  assert.throws(() => der.smallInteger(-1), RangeError);
});

test("switches to the long length form from 128 octets", () => {
  assert.equal(hex(der.octetString(Buffer.alloc(127))).slice(0, 4), "047f");
  assert.equal(hex(der.octetString(Buffer.alloc(128))).slice(0, 6), "048180");
  assert.equal(hex(der.octetString(Buffer.alloc(300))).slice(0, 8), "0482012c");
});

test("drops trailing zero bits from named bit strings", () => {
  assert.equal(hex(der.namedBits([5, 6])), "03020106"); // keyCertSign, cRLSign
  assert.equal(hex(der.namedBits([0])), "03020780"); // digitalSignature
  assert.equal(hex(der.namedBits([8])), "0303070080");
  assert.equal(hex(der.namedBits([])), "030100");
  assert.equal(hex(der.bitString(Buffer.from("abcd", "hex"))), "030300abcd");
});

test("writes UTCTime through 2049 and GeneralizedTime from 2050, in whole seconds", () => {
  const utc = der.time(new Date("2049-12-31T23:59:59.999Z"));
  assert.equal(utc[0], 0x17);
  assert.equal(utc.subarray(2).toString(), "491231235959Z");
  const generalized = der.time(new Date("2050-01-01T00:00:00Z"));
  assert.equal(generalized[0], 0x18);
  assert.equal(generalized.subarray(2).toString(), "20500101000000Z");
});

test("encodes the simple types and context tags", () => {
  assert.equal(hex(der.boolean(true)), "0101ff");
  assert.equal(hex(der.boolean(false)), "010100");
  assert.equal(hex(der.nullValue), "0500");
  assert.equal(hex(der.utf8String("é")), "0c02c3a9");
  assert.equal(hex(der.printableString("CA 1")), "130443412031");
  assert.throws(() => der.printableString("a@b"), /"a@b" has characters a PrintableString/);
  assert.equal(hex(der.explicit(3, der.nullValue)), "a3020500");
  assert.equal(hex(der.implicit(2, Buffer.from("ab"))), "82026162");
  assert.equal(hex(der.implicit(0, der.nullValue, true)), "a0020500");
  assert.throws(() => der.explicit(31, der.nullValue), /long form/);
});

test("orders a set's items by their encodings", () => {
  assert.equal(hex(der.set(der.smallInteger(2), der.smallInteger(1))), "3106020101020102");
  assert.equal(hex(der.sequence(der.smallInteger(2), der.smallInteger(1))), "3006020102020101");
});
