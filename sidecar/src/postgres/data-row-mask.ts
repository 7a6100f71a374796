// Masks result rows (DataRow) and COPY ... TO STDOUT rows with a grant's masking: whole columns by
// name and detectors inside values. A value keeps its column's type: text types get the same
// redaction as HTTP bodies ([MASKED:column], [MASKED:email]); a type that cannot carry one
// (integers, numeric) becomes NULL, counted as "nulled". Frames stay exact for every client.
import { type DetectorName, isDetectorName, maskString, redaction } from "../masking/detectors.ts";
import type { ColumnDescription } from "./protocol.ts";

export interface Masking {
  /** Column names masked whole, lower-case. */
  columns: ReadonlySet<string>;
  detectors: readonly DetectorName[];
}

export function maskingOf(grant: {
  masking?: { columns?: string[]; detectors?: string[] };
}): Masking | undefined {
  const columns = new Set((grant.masking?.columns ?? []).map((name) => name.toLowerCase()));
  const detectors = (grant.masking?.detectors ?? []).filter(isDetectorName);
  return columns.size > 0 || detectors.length > 0 ? { columns, detectors } : undefined;
}

export type MaskCounts = Record<string, number>;

// Type OIDs from pg_type.dat.
const textTypes = new Set([25, 1043, 1042, 19, 705, 142]);
const jsonType = 114;
const jsonbType = 3802;
const integerTypes = new Map([
  [21, 2],
  [23, 4],
  [20, 8],
]);
const numericType = 1700;
/** Types whose values hold no text a detector looks for (booleans, times, UUIDs, bytes, floats). */
const opaqueTypes = new Set([16, 17, 700, 701, 1082, 1083, 1114, 1184, 1186, 1266, 2950, 26]);

type ColumnPlan = "pass" | "column" | "detect";

/** The plan for one result: built once per RowDescription, applied to each row. */
export class RowMasker {
  readonly #plans: ColumnPlan[];
  readonly #columns: readonly ColumnDescription[];
  readonly #detectors: readonly DetectorName[];
  readonly counts: MaskCounts = {};

  /** Undefined when nothing in this result can need masking: rows then pass untouched. */
  static for(
    columns: readonly ColumnDescription[],
    masking: Masking | undefined,
    hidesMaskedColumns: boolean,
  ): RowMasker | undefined {
    if (!masking || columns.length === 0) return undefined;
    const plans = columns.map((column): ColumnPlan => {
      if (hidesMaskedColumns && masking.columns.size > 0) return "column";
      if (masking.columns.has(column.name.toLowerCase())) return "column";
      if (masking.detectors.length > 0 && !opaqueTypes.has(column.typeOid)) return "detect";
      return "pass";
    });
    return plans.every((plan) => plan === "pass")
      ? undefined
      : new RowMasker(columns, plans, masking.detectors);
  }

  private constructor(
    columns: readonly ColumnDescription[],
    plans: ColumnPlan[],
    detectors: readonly DetectorName[],
  ) {
    this.#columns = columns;
    this.#plans = plans;
    this.#detectors = detectors;
  }

  /** The DataRow frame with its values masked; the same frame when nothing changed. */
  maskDataRow(frame: Buffer): Buffer {
    const count = frame.readInt16BE(5);
    let offset = 7;
    let parts: Buffer[] | undefined;
    let copied = 0;
    for (let i = 0; i < count; i++) {
      const length = frame.readInt32BE(offset);
      const start = offset + 4;
      const end = length < 0 ? start : start + length;
      const plan = this.#plans[i] ?? "pass";
      const column = this.#columns[i];
      if (plan !== "pass" && length >= 0 && column) {
        const replacement = this.#maskValue(frame.subarray(start, end), column, plan);
        if (replacement !== undefined) {
          parts ??= [];
          parts.push(frame.subarray(copied, offset), encodeValue(replacement));
          copied = end;
        }
      }
      offset = end;
    }
    if (!parts) return frame;
    parts.push(frame.subarray(copied));
    const masked = Buffer.concat(parts);
    masked.writeInt32BE(masked.length - 1, 1);
    return masked;
  }

  /** The new value (null for NULL), or undefined to keep it. */
  #maskValue(
    value: Buffer,
    column: ColumnDescription,
    plan: ColumnPlan,
  ): Buffer | null | undefined {
    const binary = column.format === 1;
    const type = column.typeOid;
    if (plan === "column") {
      this.#count("column");
      if (textTypes.has(type)) return Buffer.from(redaction("column"));
      if (type === jsonType) return Buffer.from(JSON.stringify(redaction("column")));
      if (type === jsonbType) {
        const json = Buffer.from(JSON.stringify(redaction("column")));
        return binary ? Buffer.concat([Buffer.from([1]), json]) : json;
      }
      this.#count("nulled");
      return null;
    }
    const text = textOf(value, type, binary);
    if (text === undefined) {
      // A binary value of a type the sidecar cannot read (an array, a record): it cannot be
      // scanned, so it is not passed.
      this.#count("nulled");
      return null;
    }
    const result = maskString(text, this.#detectors);
    const hits = Object.entries(result.counts);
    if (hits.length === 0) return undefined;
    for (const [name, hitCount] of hits) this.#count(name, hitCount);
    const canCarryText = textTypes.has(type) || type === jsonType || type === jsonbType || !binary;
    if (!canCarryText || integerTypes.has(type) || type === numericType) {
      this.#count("nulled");
      return null;
    }
    const masked = Buffer.from(result.text);
    return type === jsonbType && binary ? Buffer.concat([Buffer.from([1]), masked]) : masked;
  }

  #count(name: string, count = 1): void {
    this.counts[name] = (this.counts[name] ?? 0) + count;
  }
}

function encodeValue(value: Buffer | null): Buffer {
  const header = Buffer.allocUnsafe(4);
  header.writeInt32BE(value === null ? -1 : value.length);
  return value === null ? header : Buffer.concat([header, value]);
}

/** The value as text a detector can read, or undefined for a binary form the sidecar cannot read. */
function textOf(value: Buffer, type: number, binary: boolean): string | undefined {
  if (!binary) return value.toString("utf8");
  if (textTypes.has(type) || type === jsonType) return value.toString("utf8");
  if (type === jsonbType) return value.toString("utf8", 1);
  const size = integerTypes.get(type);
  if (size === 2 && value.length === 2) return String(value.readInt16BE(0));
  if (size === 4 && value.length === 4) return String(value.readInt32BE(0));
  if (size === 8 && value.length === 8) return String(value.readBigInt64BE(0));
  if (type === numericType) return numericText(value);
  return undefined;
}

/** PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then base-10000 digits. */
export function numericText(value: Buffer): string | undefined {
  if (value.length < 8) return undefined;
  const digits = value.readInt16BE(0);
  const weight = value.readInt16BE(2);
  const sign = value.readUInt16BE(4);
  const scale = value.readInt16BE(6);
  if (digits < 0 || value.length !== 8 + digits * 2) return undefined;
  if (sign === 0xc000) return "NaN";
  if (sign === 0xd000) return "Infinity";
  if (sign === 0xf000) return "-Infinity";
  let integer = "";
  let fraction = "";
  for (let i = 0; i < digits; i++) {
    const group = String(value.readInt16BE(8 + i * 2)).padStart(4, "0");
    if (i <= weight) integer += group;
    else fraction += group;
  }
  for (let i = digits; i <= weight; i++) integer += "0000";
  if (weight < -1) fraction = "0000".repeat(-weight - 1) + fraction;
  integer = integer.replace(/^0+(?=\d)/, "") || "0";
  fraction = fraction.padEnd(scale, "0").slice(0, scale);
  return `${sign === 0x4000 ? "-" : ""}${integer}${fraction ? `.${fraction}` : ""}`;
}

/** COPY ... TO STDOUT rows in text or CSV format: detectors over the row, columns by position. */
export class CopyRowMasker {
  readonly counts: MaskCounts = {};
  readonly masking: Masking;
  /** Positions of the masked columns, in text format only (CSV is checked by detectors). */
  readonly maskedPositions: ReadonlySet<number>;

  constructor(masking: Masking, maskedPositions: ReadonlySet<number>) {
    this.masking = masking;
    this.maskedPositions = maskedPositions;
  }

  /** The CopyData frame masked; the same frame when nothing changed. */
  maskCopyData(frame: Buffer): Buffer {
    const row = frame.toString("utf8", 5);
    let text = row;
    if (this.maskedPositions.size > 0) {
      const newline = text.endsWith("\n") ? "\n" : "";
      const fields = text.slice(0, text.length - newline.length).split("\t");
      for (const position of this.maskedPositions) {
        if (position < fields.length && fields[position] !== "\\N") {
          fields[position] = redaction("column");
          this.counts.column = (this.counts.column ?? 0) + 1;
        }
      }
      text = fields.join("\t") + newline;
    }
    const result = maskString(text, this.masking.detectors);
    for (const [name, count] of Object.entries(result.counts))
      this.counts[name] = (this.counts[name] ?? 0) + count;
    if (result.text === row) return frame;
    const body = Buffer.from(result.text);
    const masked = Buffer.allocUnsafe(5 + body.length);
    masked[0] = 0x64;
    masked.writeInt32BE(4 + body.length, 1);
    body.copy(masked, 5);
    return masked;
  }
}
