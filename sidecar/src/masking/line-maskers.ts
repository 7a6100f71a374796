// Maskers for bodies that are not one JSON document, fed chunk by chunk like the JsonMasker:
// text (CSV, HTML, XML, plain) has the detectors run over each line, and JSON lines (NDJSON)
// has each line masked as its own JSON document. A line is held until its newline (a newline
// byte never occurs inside a UTF-8 sequence), so memory is bounded by the longest line allowed.
import { errorMessage } from "../../../api/errors.ts";
import { type DetectorName, maskString } from "./detectors.ts";
import { defaultMaxStringBytes, type JsonMasker, type MaskCounts } from "./json-masker.ts";

/** A line the masker will not hold, or one it cannot read. */
export class LineMaskingError extends Error {
  override name = "LineMaskingError";
}

/** Holds a body's current line and hands over each complete one. */
abstract class LineMasker {
  readonly counts: MaskCounts = {};
  readonly #maxLineBytes: number;
  #line: Buffer[] = [];
  #lineBytes = 0;
  #lines = 0;

  constructor(maxLineBytes = defaultMaxStringBytes) {
    this.#maxLineBytes = maxLineBytes;
  }

  write(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let start = 0;
    for (let newline = chunk.indexOf(10); newline !== -1; newline = chunk.indexOf(10, start)) {
      this.#hold(chunk.subarray(start, newline + 1));
      out.push(this.#takeLine());
      start = newline + 1;
    }
    this.#hold(chunk.subarray(start));
    return out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
  }

  end(): Buffer {
    return this.#lineBytes ? this.#takeLine() : Buffer.alloc(0);
  }

  /** The masked form of one line (its newline included, if it had one). */
  protected abstract maskLine(line: Buffer, number: number): Buffer;

  protected count(counts: MaskCounts): void {
    for (const [kind, n] of Object.entries(counts) as [keyof MaskCounts, number][]) {
      this.counts[kind] = (this.counts[kind] ?? 0) + n;
    }
  }

  #hold(part: Buffer): void {
    if (part.length === 0) return;
    this.#lineBytes += part.length;
    if (this.#lineBytes > this.#maxLineBytes) {
      throw new LineMaskingError(
        `line ${this.#lines + 1} is longer than ${this.#maxLineBytes} bytes, too long to mask`,
      );
    }
    // Copied: the chunk may be a view of a buffer its producer reuses.
    this.#line.push(Buffer.from(part));
  }

  #takeLine(): Buffer {
    const line = this.#line.length === 1 ? (this.#line[0] as Buffer) : Buffer.concat(this.#line);
    this.#line = [];
    this.#lineBytes = 0;
    this.#lines++;
    return this.maskLine(line, this.#lines);
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Text of any kind: each line's matches of the detectors replaced by their redaction. */
export class TextMasker extends LineMasker {
  readonly #detectors: readonly DetectorName[];

  constructor(detectors: readonly DetectorName[], maxLineBytes?: number) {
    super(maxLineBytes);
    this.#detectors = detectors;
  }

  protected maskLine(line: Buffer, number: number): Buffer {
    let text: string;
    try {
      text = utf8.decode(line);
    } catch {
      throw new LineMaskingError(`line ${number} is not UTF-8 text`);
    }
    const masked = maskString(text, this.#detectors);
    if (Object.keys(masked.counts).length === 0) return line;
    this.count(masked.counts);
    return Buffer.from(masked.text);
  }
}

/** JSON lines: every non-blank line masked as its own JSON document. */
export class JsonLinesMasker extends LineMasker {
  readonly #masker: () => JsonMasker;

  constructor(masker: () => JsonMasker, maxLineBytes?: number) {
    super(maxLineBytes);
    this.#masker = masker;
  }

  protected maskLine(line: Buffer, number: number): Buffer {
    if (line.every((byte) => byte === 0x20 || byte === 0x09 || byte === 0x0d || byte === 0x0a)) {
      return line;
    }
    const masker = this.#masker();
    try {
      const masked = Buffer.concat([masker.write(line), masker.end()]);
      this.count(masker.counts);
      return masked;
    } catch (error) {
      throw new LineMaskingError(`line ${number}: ${errorMessage(error)}`);
    }
  }
}
