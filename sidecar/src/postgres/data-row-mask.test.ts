// Row masking keeps every value readable by the client that asked for it: text types get the
// redaction, JSON stays JSON, a type that cannot carry text becomes NULL (and is counted), and
// the DataRow's framing stays exact.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CopyRowMasker, maskingOf, numericText, RowMasker } from "./data-row-mask.ts";
import type { ColumnDescription } from "./protocol.ts";

function column(name: string, typeOid: number, format = 0): ColumnDescription {
  return { name, tableOid: 0, column: 0, typeOid, typeSize: -1, typeModifier: -1, format };
}

function dataRow(values: (Buffer | string | null)[]): Buffer {
  const parts = values.map((value) => {
    const header = Buffer.alloc(4);
    if (value === null) {
      header.writeInt32BE(-1);
      return header;
    }
    const bytes = typeof value === "string" ? Buffer.from(value) : value;
    header.writeInt32BE(bytes.length);
    return Buffer.concat([header, bytes]);
  });
  const count = Buffer.alloc(2);
  count.writeInt16BE(values.length);
  const body = Buffer.concat([count, ...parts]);
  const frame = Buffer.alloc(5);
  frame.write("D");
  frame.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([frame, body]);
}

function values(frame: Buffer): (string | null)[] {
  assert.equal(frame.readInt32BE(1), frame.length - 1, "the length covers the row");
  const out: (string | null)[] = [];
  let offset = 7;
  for (let i = 0; i < frame.readInt16BE(5); i++) {
    const length = frame.readInt32BE(offset);
    offset += 4;
    out.push(length < 0 ? null : frame.toString("latin1", offset, offset + length));
    offset += Math.max(length, 0);
  }
  assert.equal(offset, frame.length);
  return out;
}

const masking = maskingOf({
  masking: { columns: ["SSN", "profile"], detectors: ["email", "credit-card"] },
});

describe("DataRow masking", () => {
  it("masks named columns by type and detectors inside values, counting both", () => {
    const columns = [
      column("name", 25),
      column("ssn", 1043),
      column("email", 25),
      column("card", 20),
      column("profile", 3802),
      column("age", 23),
    ];
    const masker = RowMasker.for(columns, masking, false);
    assert.ok(masker);
    const row = dataRow([
      "Ada",
      "123-45-6789",
      "write to ada@example.com",
      "4111111111111111",
      '{"a":1}',
      "36",
    ]);
    assert.deepEqual(values(masker.maskDataRow(row)), [
      "Ada",
      "[MASKED:column]",
      "write to [MASKED:email]",
      null,
      '"[MASKED:column]"',
      "36",
    ]);
    assert.deepEqual(masker.counts, { column: 2, email: 1, "credit-card": 1, nulled: 1 });
  });

  it("masks binary values: text types get the redaction, jsonb keeps its version byte, integers become NULL", () => {
    const card = Buffer.alloc(8);
    card.writeBigInt64BE(4111111111111111n);
    const columns = [
      column("ssn", 25, 1),
      column("profile", 3802, 1),
      column("card", 20, 1),
      column("email", 25, 1),
    ];
    const masker = RowMasker.for(columns, masking, false);
    const masked = masker?.maskDataRow(
      dataRow(["1", Buffer.from('\x01{"a":1}'), card, "x@example.com"]),
    );
    assert.ok(masked);
    assert.deepEqual(values(masked), [
      "[MASKED:column]",
      '\x01"[MASKED:column]"',
      null,
      "[MASKED:email]",
    ]);
  });

  it("passes rows untouched (the same buffer) when nothing can need masking", () => {
    const masker = RowMasker.for([column("flag", 16), column("at", 1184)], masking, false);
    assert.equal(masker, undefined);
    const plain = RowMasker.for([column("name", 25)], masking, false);
    const row = dataRow(["Ada"]);
    assert.equal(plain?.maskDataRow(row), row);
  });

  it("masks every column of a result that hides masked columns, and NULLs binary values it cannot read", () => {
    const masker = RowMasker.for([column("x", 25), column("n", 23)], masking, true);
    assert.deepEqual(values(masker?.maskDataRow(dataRow(["secret", "7"])) ?? Buffer.alloc(0)), [
      "[MASKED:column]",
      null,
    ]);
    const arrays = RowMasker.for(
      [column("tags", 1009, 1)],
      maskingOf({ masking: { detectors: ["email"] } }),
      false,
    );
    assert.deepEqual(
      values(arrays?.maskDataRow(dataRow([Buffer.from([0, 0, 0, 1])])) ?? Buffer.alloc(0)),
      [null],
    );
  });

  it("reads PostgreSQL's binary numeric", () => {
    const numeric = (digits: number[], weight: number, sign: number, scale: number) => {
      const buffer = Buffer.alloc(8 + digits.length * 2);
      buffer.writeInt16BE(digits.length, 0);
      buffer.writeInt16BE(weight, 2);
      buffer.writeUInt16BE(sign, 4);
      buffer.writeInt16BE(scale, 6);
      for (const [i, digit] of digits.entries()) buffer.writeInt16BE(digit, 8 + i * 2);
      return buffer;
    };
    assert.equal(numericText(numeric([4111, 1111, 1111, 1111], 3, 0, 0)), "4111111111111111");
    assert.equal(numericText(numeric([12, 3400], 0, 0x4000, 2)), "-12.34");
    assert.equal(numericText(numeric([5], -1, 0, 4)), "0.0005");
    assert.equal(numericText(numeric([1], 2, 0, 0)), "100000000");
    assert.equal(numericText(numeric([], 0, 0xc000, 0)), "NaN");
  });
});

describe("COPY masking", () => {
  it("masks named columns by position and detectors in text rows", () => {
    const masker = new CopyRowMasker(
      masking ?? { columns: new Set(), detectors: [] },
      new Set([1]),
    );
    const frame = Buffer.concat([
      Buffer.from("d\0\0\0\0"),
      Buffer.from("Ada\t123-45-6789\tada@example.com\n"),
    ]);
    frame.writeInt32BE(frame.length - 1, 1);
    const masked = masker.maskCopyData(frame);
    assert.equal(masked.toString("utf8", 5), "Ada\t[MASKED:column]\t[MASKED:email]\n");
    assert.equal(masked.readInt32BE(1), masked.length - 1);
    assert.deepEqual(masker.counts, { column: 1, email: 1 });
  });
});
