// Masks a JSON response body as it streams through the proxy: values selected by a policy's
// jsonPaths are replaced whole (subtrees included) by "[MASKED:json-path]", and detectors mask
// what they find inside string values. Everything else is copied byte for byte, whitespace
// included.
//
// The tokenizer is a hand-written state machine over bytes, so chunks may split anywhere (inside
// a string, an escape, a number, a literal or a UTF-8 sequence). Only what a decision needs is
// held: an object key while a jsonPath may still select below it, and, when detectors are on, a
// string value until its closing quote; both are capped by maxStringBytes, nesting by maxDepth.
// Memory is therefore bounded by maxStringBytes plus one chunk, and the stack by maxDepth.
//
// Detectors see string values only, never object keys: keys are the document's schema, and
// masking them would change its shape and could merge distinct members into duplicates. Numbers
// are not inspected either (a 16-digit id passes the Luhn check one time in ten).
import {
  type DetectorName,
  detectorNames,
  isDetectorName,
  maskString,
  redaction,
} from "./detectors.ts";
import { JsonPathMatcher, type JsonPathState } from "./json-path.ts";

export type MaskKind = DetectorName | "json-path";
/** Values masked, per detector and for jsonPaths; never the values themselves. */
export type MaskCounts = Partial<Record<MaskKind, number>>;

export const defaultMaxStringBytes = 1024 * 1024;
export const defaultMaxDepth = 256;

export interface JsonMaskerOptions {
  /** JSONPath expressions whose values are masked whole (see json-path.ts for the subset). */
  jsonPaths: readonly string[];
  detectors: readonly DetectorName[];
  /** The longest key or string value the masker holds (see above), in raw (escaped) bytes;
   * default 1 MiB. */
  maxStringBytes?: number;
  /** The deepest nesting of objects and arrays; default 256. */
  maxDepth?: number;
}

/** The body cannot be masked; offset is the byte (from the start of the body) where that became
 * clear. Output already returned was masked correctly, but the rest of the body was not. */
export class JsonMaskingError extends Error {
  override name = "JsonMaskingError";
  readonly offset: number;

  constructor(offset: number, message: string) {
    super(message);
    this.offset = offset;
  }
}

/** The body is not JSON (RFC 8259, UTF-8). */
export class InvalidJsonError extends JsonMaskingError {
  override name = "InvalidJsonError";

  constructor(offset: number, problem: string) {
    super(offset, `invalid JSON at byte ${offset}: ${problem}`);
  }
}

/** The body is JSON, but too large to inspect within the masker's limits. */
export class JsonMaskingLimitError extends JsonMaskingError {
  override name = "JsonMaskingLimitError";
  readonly limit: "maxStringBytes" | "maxDepth";

  constructor(offset: number, limit: "maxStringBytes" | "maxDepth", problem: string) {
    super(offset, `JSON too large to mask at byte ${offset}: ${problem}`);
    this.limit = limit;
  }
}

const State = {
  /** A value: at the top level, after ":" or after "," in an array. */
  Value: 0,
  /** After "[": a value or "]". */
  FirstElement: 1,
  /** After "{": a key or "}". */
  FirstMember: 2,
  /** After "," in an object: a key. */
  MemberKey: 3,
  Colon: 4,
  /** After a value in a container: "," or its closing bracket. */
  AfterValue: 5,
  /** After the top-level value: whitespace only. */
  Done: 6,
  String: 7,
  Escape: 8,
  EscapeHex: 9,
  Utf8Continuation: 10,
  Literal: 11,
  NumberMinus: 12,
  NumberZero: 13,
  NumberInteger: 14,
  NumberDot: 15,
  NumberFraction: 16,
  NumberExponent: 17,
  NumberExponentSign: 18,
  NumberExponentDigits: 19,
} as const;
type State = (typeof State)[keyof typeof State];

const Byte = {
  tab: 0x09,
  newline: 0x0a,
  carriageReturn: 0x0d,
  space: 0x20,
  quote: 0x22,
  comma: 0x2c,
  minus: 0x2d,
  plus: 0x2b,
  dot: 0x2e,
  zero: 0x30,
  nine: 0x39,
  colon: 0x3a,
  openBracket: 0x5b,
  backslash: 0x5c,
  closeBracket: 0x5d,
  openBrace: 0x7b,
  closeBrace: 0x7d,
} as const;

const maskedByPath = Buffer.from(JSON.stringify(redaction("json-path")));
const quote = Buffer.from('"');
const literals: Record<number, string> = { 116: "true", 102: "false", 110: "null" };
const simpleEscapes = new Set([...'"\\/bfnrt'].map((character) => character.charCodeAt(0)));

interface Frame {
  container: "object" | "array";
  /** Where the container's own path stands; children step from here. */
  pathState: JsonPathState;
  /** The index of the current element (arrays). */
  index: number;
  /** The key of the current member (objects). */
  key: string;
}

export class JsonMasker {
  readonly #matcher: JsonPathMatcher;
  readonly #detectors: readonly DetectorName[];
  readonly #maxStringBytes: number;
  readonly #maxDepth: number;
  readonly #counts: MaskCounts = {};
  readonly #stack: Frame[] = [];
  #state: State = State.Value;
  /** Bytes of the body before the current chunk. */
  #offset = 0;
  /** What stopped the masker; its state is not to be trusted after any throw. */
  #failure: unknown;
  /** The stack depth at which a value selected by a jsonPath began; -1 when none is open. */
  #maskedDepth = -1;

  // The chunk being written and the output it produces: spans of it copied through, and
  // replacements, in order. Copying pauses while a value is masked or a string is held.
  #chunk: Buffer = Buffer.alloc(0);
  #pieces: Buffer[] = [];
  #copyFrom = 0;
  #paused = false;

  // The string being read. Keys and, with detectors, values are collected; a collected value is
  // held back from the output until its closing quote says what to write.
  #stringIsKey = false;
  #stringCollected = false;
  #stringHeld = false;
  #stringParts: Buffer[] = [];
  #stringLength = 0;
  #stringStartInChunk = 0;
  #stringOffset = 0;
  #hexDigitsLeft = 0;
  #utf8BytesLeft = 0;
  #utf8Min = 0;
  #utf8Max = 0;

  #literal = "";
  #literalIndex = 0;

  /** Throws JsonPathError for a jsonPath outside the supported subset, RangeError for an unknown
   * detector or a limit that is not a positive integer. */
  constructor(options: JsonMaskerOptions) {
    this.#matcher = new JsonPathMatcher(options.jsonPaths);
    this.#detectors = knownDetectors(options.detectors);
    this.#maxStringBytes = positiveInteger(
      "maxStringBytes",
      options.maxStringBytes ?? defaultMaxStringBytes,
    );
    this.#maxDepth = positiveInteger("maxDepth", options.maxDepth ?? defaultMaxDepth);
  }

  /** Values masked so far, per detector and for jsonPaths. */
  get counts(): MaskCounts {
    return { ...this.#counts };
  }

  /** Consumes the next bytes of the body and returns the output ready so far. Throws a
   * JsonMaskingError when the body cannot be masked; the masker is then unusable. */
  write(chunk: Buffer): Buffer {
    return this.#guarded(() => {
      this.#startChunk(chunk);
      for (let index = 0; index < chunk.length; index++) {
        if (this.#state === State.String) index = this.#skipPlainStringBytes(index);
        if (index < chunk.length) this.#consume(chunk[index] as number, index);
      }
      this.#collectStringBytes(chunk.length);
      return this.#finishChunk(chunk.length);
    });
  }

  /** Ends the body: throws InvalidJsonError if it stopped short of one complete JSON value, and
   * returns the output still to write (empty today, as output leaves once decided; write it). */
  end(): Buffer {
    return this.#guarded(() => {
      this.#startChunk(Buffer.alloc(0));
      if (isNumberState(this.#state) && numberMayEnd(this.#state)) this.#endValue(0);
      if (this.#state !== State.Done) {
        throw new InvalidJsonError(this.#offset, `unexpected end of input ${this.#expectation()}`);
      }
      return this.#finishChunk(0);
    });
  }

  #guarded(work: () => Buffer): Buffer {
    if (this.#failure !== undefined) throw this.#failure;
    try {
      return work();
    } catch (error) {
      this.#failure = error;
      throw error;
    }
  }

  #startChunk(chunk: Buffer): void {
    this.#chunk = chunk;
    this.#pieces = [];
    this.#copyFrom = 0;
  }

  #finishChunk(length: number): Buffer {
    if (!this.#paused) this.#pieces.push(this.#chunk.subarray(this.#copyFrom, length));
    this.#offset += length;
    const output = Buffer.concat(this.#pieces);
    this.#pieces = [];
    this.#chunk = Buffer.alloc(0);
    return output;
  }

  #pauseCopying(index: number): void {
    if (this.#paused) return;
    this.#pieces.push(this.#chunk.subarray(this.#copyFrom, index));
    this.#paused = true;
  }

  #resumeCopying(index: number): void {
    this.#paused = false;
    this.#copyFrom = index;
  }

  #consume(byte: number, index: number): void {
    switch (this.#state) {
      case State.Value:
        if (!isWhitespace(byte)) this.#beginValue(byte, index);
        return;
      case State.FirstElement:
        if (byte === Byte.closeBracket) this.#closeContainer(index);
        else if (!isWhitespace(byte)) this.#beginValue(byte, index);
        return;
      case State.FirstMember:
        if (byte === Byte.closeBrace) this.#closeContainer(index);
        else this.#expectKey(byte, index, `'"' to start a key or "}"`);
        return;
      case State.MemberKey:
        this.#expectKey(byte, index, `'"' to start a key`);
        return;
      case State.Colon:
        if (byte === Byte.colon) this.#state = State.Value;
        else if (!isWhitespace(byte)) this.#unexpected(byte, index, `":" after a key`);
        return;
      case State.AfterValue:
        this.#consumeAfterValue(byte, index);
        return;
      case State.Done:
        if (!isWhitespace(byte)) this.#unexpected(byte, index, "nothing after the JSON value");
        return;
      case State.String:
        this.#consumeStringByte(byte, index);
        return;
      case State.Escape:
        this.#consumeEscape(byte, index);
        return;
      case State.EscapeHex:
        if (!isHexDigit(byte)) this.#unexpected(byte, index, "a hex digit in a \\u escape");
        if (--this.#hexDigitsLeft === 0) this.#state = State.String;
        return;
      case State.Utf8Continuation:
        this.#consumeUtf8Continuation(byte, index);
        return;
      case State.Literal:
        this.#consumeLiteral(byte, index);
        return;
      default:
        this.#consumeNumberByte(byte, index);
    }
  }

  #expectKey(byte: number, index: number, expected: string): void {
    if (byte === Byte.quote) this.#beginString(index, true);
    else if (!isWhitespace(byte)) this.#unexpected(byte, index, expected);
  }

  #consumeAfterValue(byte: number, index: number): void {
    const frame = this.#stack.at(-1) as Frame;
    if (isWhitespace(byte)) return;
    if (byte === Byte.comma) {
      frame.index++;
      this.#state = frame.container === "array" ? State.Value : State.MemberKey;
    } else if (byte === Byte.closeBracket && frame.container === "array") {
      this.#closeContainer(index);
    } else if (byte === Byte.closeBrace && frame.container === "object") {
      this.#closeContainer(index);
    } else {
      const closing = frame.container === "array" ? "]" : "}";
      this.#unexpected(byte, index, `"," or "${closing}"`);
    }
  }

  #beginValue(byte: number, index: number): void {
    if (!startsValue(byte)) this.#unexpected(byte, index, "a value");
    const pathState = this.#maskedDepth < 0 ? this.#childPathState() : [];
    if (this.#maskedDepth < 0 && this.#matcher.accepts(pathState)) this.#beginMasked(index);
    if (byte === Byte.openBrace) {
      this.#openContainer("object", pathState, index);
    } else if (byte === Byte.openBracket) {
      this.#openContainer("array", pathState, index);
    } else if (byte === Byte.quote) {
      this.#beginString(index, false);
    } else if (byte === Byte.minus) {
      this.#state = State.NumberMinus;
    } else if (byte === Byte.zero) {
      this.#state = State.NumberZero;
    } else if (isDigit(byte)) {
      this.#state = State.NumberInteger;
    } else {
      this.#literal = literals[byte] as string;
      this.#literalIndex = 1;
      this.#state = State.Literal;
    }
  }

  #childPathState(): JsonPathState {
    const parent = this.#stack.at(-1);
    if (!parent) return this.#matcher.start;
    const key = parent.container === "array" ? parent.index : parent.key;
    return this.#matcher.step(parent.pathState, key);
  }

  #beginMasked(index: number): void {
    this.#pauseCopying(index);
    this.#pieces.push(maskedByPath);
    this.#count("json-path", 1);
    this.#maskedDepth = this.#stack.length;
  }

  #openContainer(container: Frame["container"], pathState: JsonPathState, index: number): void {
    if (this.#stack.length >= this.#maxDepth) {
      throw new JsonMaskingLimitError(
        this.#offset + index,
        "maxDepth",
        `objects and arrays nest deeper than maxDepth (${this.#maxDepth})`,
      );
    }
    this.#stack.push({ container, pathState, index: 0, key: "" });
    this.#state = container === "array" ? State.FirstElement : State.FirstMember;
  }

  /** Closes the innermost container; callers have checked that byte closes its kind. */
  #closeContainer(index: number): void {
    this.#stack.pop();
    this.#endValue(index + 1);
  }

  /** A value ended just before resumeAt; copying resumes there if it was the masked one. */
  #endValue(resumeAt: number): void {
    if (this.#maskedDepth === this.#stack.length) {
      this.#maskedDepth = -1;
      this.#resumeCopying(resumeAt);
    }
    this.#state = this.#stack.length === 0 ? State.Done : State.AfterValue;
  }

  #beginString(index: number, isKey: boolean): void {
    const inspected = this.#maskedDepth < 0;
    this.#stringIsKey = isKey;
    this.#stringCollected = inspected && (isKey ? this.#keyMatters() : this.#detectors.length > 0);
    this.#stringHeld = inspected && !isKey && this.#detectors.length > 0;
    this.#stringParts = [];
    this.#stringLength = 0;
    this.#stringStartInChunk = index + 1;
    this.#stringOffset = this.#offset + index;
    if (this.#stringHeld) this.#pauseCopying(index);
    this.#state = State.String;
  }

  /** Whether the current member's key can still decide if a jsonPath selects something. */
  #keyMatters(): boolean {
    return !this.#matcher.isDead((this.#stack.at(-1) as Frame).pathState);
  }

  /** The index of the first byte from index on that is not plain printable ASCII in a string. */
  #skipPlainStringBytes(index: number): number {
    const chunk = this.#chunk;
    let next = index;
    while (next < chunk.length) {
      const byte = chunk[next] as number;
      if (byte < Byte.space || byte === Byte.quote || byte === Byte.backslash || byte >= 0x80) {
        break;
      }
      next++;
    }
    return next;
  }

  #consumeStringByte(byte: number, index: number): void {
    if (byte === Byte.quote) this.#endString(index);
    else if (byte === Byte.backslash) this.#state = State.Escape;
    else if (byte < Byte.space) this.#unexpected(byte, index, "a control character escaped");
    else this.#beginUtf8Sequence(byte, index);
  }

  #consumeEscape(byte: number, index: number): void {
    if (simpleEscapes.has(byte)) {
      this.#state = State.String;
    } else if (byte === 0x75) {
      this.#hexDigitsLeft = 4;
      this.#state = State.EscapeHex;
    } else {
      this.#unexpected(byte, index, `an escape (one of "\\/bfnrtu) after "\\"`);
    }
  }

  /** Sets the bounds of the continuation bytes a UTF-8 lead byte needs (RFC 3629: no overlong
   * forms, no surrogates, nothing above U+10FFFF). */
  #beginUtf8Sequence(lead: number, index: number): void {
    const [bytesLeft, min, max] = utf8Continuations(lead);
    if (bytesLeft === 0) this.#invalidUtf8(index);
    this.#utf8BytesLeft = bytesLeft;
    this.#utf8Min = min;
    this.#utf8Max = max;
    this.#state = State.Utf8Continuation;
  }

  #consumeUtf8Continuation(byte: number, index: number): void {
    if (byte < this.#utf8Min || byte > this.#utf8Max) this.#invalidUtf8(index);
    this.#utf8Min = 0x80;
    this.#utf8Max = 0xbf;
    if (--this.#utf8BytesLeft === 0) this.#state = State.String;
  }

  #invalidUtf8(index: number): never {
    throw new InvalidJsonError(this.#offset + index, "invalid UTF-8 in a string");
  }

  /** Keeps the current string's bytes of this chunk, up to end, if the string is collected. */
  #collectStringBytes(end: number): void {
    if (!this.#isInString() || !this.#stringCollected) return;
    const bytes = this.#chunk.subarray(this.#stringStartInChunk, end);
    this.#stringParts.push(end === this.#chunk.length ? Buffer.from(bytes) : bytes);
    this.#stringLength += bytes.length;
    this.#stringStartInChunk = 0;
    if (this.#stringLength > this.#maxStringBytes) {
      const kind = this.#stringIsKey ? "a key" : "a string value";
      throw new JsonMaskingLimitError(
        this.#stringOffset,
        "maxStringBytes",
        `${kind} is longer than maxStringBytes (${this.#maxStringBytes} bytes)`,
      );
    }
  }

  #isInString(): boolean {
    return (
      this.#state === State.String ||
      this.#state === State.Escape ||
      this.#state === State.EscapeHex ||
      this.#state === State.Utf8Continuation
    );
  }

  #endString(index: number): void {
    this.#collectStringBytes(index);
    const raw = this.#stringCollected ? joined(this.#stringParts) : undefined;
    this.#stringParts = [];
    if (this.#stringIsKey) {
      // An uncollected key cannot change the (dead) path state, so it is not decoded.
      (this.#stack.at(-1) as Frame).key = raw ? decodeJsonString(raw) : "";
      this.#state = State.Colon;
      return;
    }
    if (raw && this.#stringHeld) {
      this.#pieces.push(...this.#maskStringValue(raw));
      this.#resumeCopying(index + 1);
    }
    this.#endValue(index + 1);
  }

  /** The bytes to write for a string value: its own bytes unless a detector found something. */
  #maskStringValue(raw: Buffer): Buffer[] {
    const { text, counts } = maskString(decodeJsonString(raw), this.#detectors);
    const found = Object.entries(counts) as [DetectorName, number][];
    if (found.length === 0) return [quote, raw, quote];
    for (const [name, count] of found) this.#count(name, count);
    return [Buffer.from(JSON.stringify(text))];
  }

  #consumeLiteral(byte: number, index: number): void {
    if (byte !== this.#literal.charCodeAt(this.#literalIndex)) {
      this.#unexpected(byte, index, `the literal ${this.#literal}`);
    }
    if (++this.#literalIndex === this.#literal.length) this.#endValue(index + 1);
  }

  #consumeNumberByte(byte: number, index: number): void {
    const next = nextNumberState(this.#state, byte);
    if (next !== undefined) {
      this.#state = next;
      return;
    }
    if (!numberMayEnd(this.#state)) this.#unexpected(byte, index, "a digit");
    // The byte after a number belongs to what follows it.
    this.#endValue(index);
    this.#consume(byte, index);
  }

  #count(kind: MaskKind, count: number): void {
    this.#counts[kind] = (this.#counts[kind] ?? 0) + count;
  }

  #unexpected(byte: number, index: number, expected: string): never {
    throw new InvalidJsonError(
      this.#offset + index,
      `expected ${expected}, found ${describe(byte)}`,
    );
  }

  #expectation(): string {
    if (this.#isInString()) return "inside a string";
    if (this.#state === State.Literal) return `inside the literal ${this.#literal}`;
    if (isNumberState(this.#state)) return "inside a number";
    if (this.#stack.length > 0) return `inside an unclosed ${this.#stack.at(-1)?.container}`;
    return "before any JSON value";
  }
}

/** Masks a whole body at once; the same output as writing it in any chunks. */
export function maskJson(
  body: Uint8Array,
  options: JsonMaskerOptions,
): { body: Buffer; counts: MaskCounts } {
  const masker = new JsonMasker(options);
  const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const output = Buffer.concat([masker.write(bytes), masker.end()]);
  return { body: output, counts: masker.counts };
}

function knownDetectors(names: readonly string[]): DetectorName[] {
  const unknown = names.filter((name) => !isDetectorName(name));
  if (unknown.length > 0) {
    throw new RangeError(
      `unknown masking detector ${unknown.map((name) => `"${name}"`).join(", ")}; known: ${detectorNames.join(", ")}`,
    );
  }
  return names.filter(isDetectorName);
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function joined(parts: Buffer[]): Buffer {
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
}

/** The text of a string's raw bytes between its quotes, already validated as JSON. */
function decodeJsonString(raw: Buffer): string {
  const text = raw.toString("utf8");
  return raw.includes(Byte.backslash) ? (JSON.parse(`"${text}"`) as string) : text;
}

function isWhitespace(byte: number): boolean {
  return (
    byte === Byte.space ||
    byte === Byte.newline ||
    byte === Byte.carriageReturn ||
    byte === Byte.tab
  );
}

function isDigit(byte: number): boolean {
  return byte >= Byte.zero && byte <= Byte.nine;
}

function isHexDigit(byte: number): boolean {
  return isDigit(byte) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}

function startsValue(byte: number): boolean {
  return (
    byte === Byte.openBrace ||
    byte === Byte.openBracket ||
    byte === Byte.quote ||
    byte === Byte.minus ||
    isDigit(byte) ||
    byte in literals
  );
}

/** [continuation bytes, min, max of the first one] for a UTF-8 lead byte; 0 bytes if invalid. */
function utf8Continuations(lead: number): [number, number, number] {
  if (lead >= 0xc2 && lead <= 0xdf) return [1, 0x80, 0xbf];
  if (lead === 0xe0) return [2, 0xa0, 0xbf];
  if (lead === 0xed) return [2, 0x80, 0x9f];
  if (lead >= 0xe1 && lead <= 0xef) return [2, 0x80, 0xbf];
  if (lead === 0xf0) return [3, 0x90, 0xbf];
  if (lead === 0xf4) return [3, 0x80, 0x8f];
  if (lead >= 0xf1 && lead <= 0xf3) return [3, 0x80, 0xbf];
  return [0, 0, 0];
}

function isNumberState(state: State): boolean {
  return state >= State.NumberMinus;
}

/** Whether a number may end in state (RFC 8259: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?). */
function numberMayEnd(state: State): boolean {
  return (
    state === State.NumberZero ||
    state === State.NumberInteger ||
    state === State.NumberFraction ||
    state === State.NumberExponentDigits
  );
}

/** The number state after byte, or undefined if byte cannot continue the number. */
function nextNumberState(state: State, byte: number): State | undefined {
  const digit = isDigit(byte);
  switch (state) {
    case State.NumberMinus:
      if (byte === Byte.zero) return State.NumberZero;
      return digit ? State.NumberInteger : undefined;
    case State.NumberZero:
    case State.NumberInteger:
      if (digit && state === State.NumberInteger) return State.NumberInteger;
      if (byte === Byte.dot) return State.NumberDot;
      return byte === 0x65 || byte === 0x45 ? State.NumberExponent : undefined;
    case State.NumberDot:
    case State.NumberFraction:
      if (digit) return State.NumberFraction;
      if (state === State.NumberDot) return undefined;
      return byte === 0x65 || byte === 0x45 ? State.NumberExponent : undefined;
    case State.NumberExponent:
      if (byte === Byte.plus || byte === Byte.minus) return State.NumberExponentSign;
      return digit ? State.NumberExponentDigits : undefined;
    default:
      return digit ? State.NumberExponentDigits : undefined;
  }
}

function describe(byte: number): string {
  if (byte > 0x20 && byte < 0x7f) return JSON.stringify(String.fromCharCode(byte));
  return `byte 0x${byte.toString(16).padStart(2, "0")}`;
}
