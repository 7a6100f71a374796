// The PostgreSQL v3 wire protocol as the sidecar needs it: framing of both directions, strict
// parsers for every frontend message (a message that does not parse exactly is never forwarded)
// and builders for the few backend messages the sidecar writes itself.

/** Startup codes: the int32 after a startup packet's length. */
export const startupCodes = {
  protocol3: 196608,
  ssl: 80877103,
  gssenc: 80877104,
  cancel: 80877102,
} as const;

/** The largest frontend message the sidecar holds whole (PostgreSQL's own limit is 1 GiB). */
export const maxFrontendMessageBytes = 64 * 1024 * 1024;
/** A startup packet is small; PostgreSQL refuses those over 10,000 bytes. */
export const maxStartupBytes = 10_000;

/** The wire is wrong: the connection ends with a FATAL error naming what was wrong. */
export class ProtocolViolation extends Error {
  override name = "ProtocolViolation";
  readonly sqlState: string;
  constructor(message: string, sqlState = "08P01") {
    super(message);
    this.sqlState = sqlState;
  }
}

export interface Message {
  /** The type byte as a character: "Q", "P", "D"… */
  type: string;
  /** The whole message, type and length included: forwarded as is when nothing changes. */
  frame: Buffer;
  /** The body after the length. */
  body: Buffer;
}

/**
 * Cuts a byte stream into typed messages (type byte, int32 length including itself, body).
 * Bytes of an incomplete message are kept for the next push.
 */
export class MessageReader {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** The whole length of the message being gathered, once its header has arrived. */
  #needed = 0;
  readonly maxBytes: number;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** Every complete message in what has arrived so far, in order. */
  push(chunk: Buffer): Message[] {
    // A large message arrives in many chunks: they are joined once, when it is complete.
    if (this.#pendingBytes > 0) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
      if (this.#pendingBytes < Math.max(this.#needed, 5)) return [];
      chunk = Buffer.concat(this.#pending, this.#pendingBytes);
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    const messages: Message[] = [];
    let offset = 0;
    this.#needed = 0;
    while (chunk.length - offset >= 5) {
      const length = chunk.readInt32BE(offset + 1);
      if (length < 4 || length > this.maxBytes) {
        throw new ProtocolViolation(
          `message "${String.fromCharCode(chunk[offset] ?? 0)}" claims ${length} bytes (at most ${this.maxBytes})`,
          length < 4 ? "08P01" : "54000",
        );
      }
      if (chunk.length - offset < length + 1) {
        this.#needed = length + 1;
        break;
      }
      const frame = chunk.subarray(offset, offset + length + 1);
      messages.push({ type: String.fromCharCode(frame[0] ?? 0), frame, body: frame.subarray(5) });
      offset += length + 1;
    }
    if (offset < chunk.length) {
      this.#pending = [chunk.subarray(offset)];
      this.#pendingBytes = chunk.length - offset;
    }
    return messages;
  }

  /** Bytes held of a message not yet complete. */
  get buffered(): number {
    return this.#pendingBytes;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Reads a frontend message's fields in order; anything left over or missing is a violation. */
export class FieldReader {
  #offset = 0;
  readonly body: Buffer;
  readonly what: string;

  constructor(body: Buffer, what: string) {
    this.body = body;
    this.what = what;
  }

  string(): string {
    const end = this.body.indexOf(0, this.#offset);
    if (end < 0) throw this.#violation("a string without its terminating zero byte");
    let text: string;
    try {
      text = utf8.decode(this.body.subarray(this.#offset, end));
    } catch {
      // The server would read other characters than the sidecar's parser did.
      throw new ProtocolViolation(
        `malformed ${this.what} message: a string that is not UTF-8`,
        "22021",
      );
    }
    this.#offset = end + 1;
    return text;
  }

  int16(): number {
    this.#need(2);
    const value = this.body.readInt16BE(this.#offset);
    this.#offset += 2;
    return value;
  }

  int32(): number {
    this.#need(4);
    const value = this.body.readInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }

  byte(): number {
    this.#need(1);
    return this.body[this.#offset++] ?? 0;
  }

  bytes(count: number): Buffer {
    this.#need(count);
    const bytes = this.body.subarray(this.#offset, this.#offset + count);
    this.#offset += count;
    return bytes;
  }

  /** An int16 count, then that many items. */
  list<T>(item: () => T): T[] {
    const count = this.int16();
    if (count < 0) throw this.#violation(`a negative count (${count})`);
    const items: T[] = [];
    for (let i = 0; i < count; i++) items.push(item());
    return items;
  }

  /** The message must be fully read: trailing bytes would be read differently by the server. */
  end(): void {
    if (this.#offset !== this.body.length)
      throw this.#violation(`${this.body.length - this.#offset} unexpected trailing bytes`);
  }

  #need(bytes: number): void {
    if (bytes < 0 || this.#offset + bytes > this.body.length) throw this.#violation("is truncated");
  }

  #violation(problem: string): ProtocolViolation {
    return new ProtocolViolation(`malformed ${this.what} message: ${problem}`);
  }
}

// Frontend messages, parsed exactly as PostgreSQL reads them.

export interface StartupMessage {
  code: number;
  /** Protocol 3.x: the parameters in order. */
  parameters: Map<string, string>;
  /** CancelRequest: the key the sidecar handed out. */
  cancel?: { processId: number; secretKey: Buffer };
}

export function parseStartup(packet: Buffer): StartupMessage {
  const fields = new FieldReader(packet.subarray(4), "startup");
  const code = fields.int32();
  const parameters = new Map<string, string>();
  if (code === startupCodes.cancel) {
    const processId = fields.int32();
    const secretKey = packet.subarray(12);
    if (secretKey.length < 4 || secretKey.length > 256)
      throw new ProtocolViolation("malformed CancelRequest: a secret key of 4 to 256 bytes");
    return { code, parameters, cancel: { processId, secretKey } };
  }
  if (code === startupCodes.ssl || code === startupCodes.gssenc) {
    fields.end();
    return { code, parameters };
  }
  if (code >> 16 !== 3) {
    throw new ProtocolViolation(
      `unsupported frontend protocol ${code >> 16}.${code & 0xffff}: the sidecar speaks 3.0`,
      "0A000",
    );
  }
  for (;;) {
    const name = fields.string();
    if (name === "") break;
    const value = fields.string();
    if (parameters.has(name)) throw new ProtocolViolation(`startup parameter "${name}" repeated`);
    parameters.set(name, value);
  }
  fields.end();
  return { code, parameters };
}

/** A frontend message after the startup, every field read exactly as PostgreSQL reads it. */
export type FrontendMessage =
  | { type: "Q"; query: string }
  | { type: "P"; name: string; query: string; parameterTypes: number[] }
  | {
      type: "B";
      portal: string;
      statement: string;
      parameterFormats: number[];
      /** The values as they came (null for NULL); never kept past the message. */
      values: (Buffer | null)[];
      resultFormats: number[];
    }
  | { type: "D" | "C"; target: "S" | "P"; name: string }
  | { type: "E"; portal: string; maxRows: number }
  | { type: "S" | "H" | "c" | "X" }
  | { type: "d"; data: Buffer }
  | { type: "f"; reason: string }
  | { type: "F"; body: Buffer };

const messageNames: Record<string, string> = {
  Q: "Query",
  P: "Parse",
  B: "Bind",
  D: "Describe",
  C: "Close",
  E: "Execute",
  S: "Sync",
  H: "Flush",
  c: "CopyDone",
  X: "Terminate",
  d: "CopyData",
  f: "CopyFail",
  F: "FunctionCall",
};

/** Parses a frontend message whole; anything PostgreSQL would read differently is a violation. */
export function parseFrontend(message: Message): FrontendMessage {
  const what = messageNames[message.type];
  if (!what)
    throw new ProtocolViolation(`unknown frontend message type "${printable(message.type)}"`);
  const fields = new FieldReader(message.body, what);
  let parsed: FrontendMessage;
  switch (message.type) {
    case "Q":
      parsed = { type: "Q", query: fields.string() };
      break;
    case "P": {
      const name = fields.string();
      const query = fields.string();
      parsed = { type: "P", name, query, parameterTypes: fields.list(() => fields.int32()) };
      break;
    }
    case "B": {
      const portal = fields.string();
      const statement = fields.string();
      const parameterFormats = fields.list(() => formatCode(fields.int16(), what));
      const values = fields.list(() => {
        const length = fields.int32();
        if (length < -1)
          throw new ProtocolViolation("malformed Bind message: negative value length");
        return length === -1 ? null : fields.bytes(length);
      });
      const resultFormats = fields.list(() => formatCode(fields.int16(), what));
      parsed = { type: "B", portal, statement, parameterFormats, values, resultFormats };
      break;
    }
    case "D":
    case "C": {
      const target = String.fromCharCode(fields.byte());
      if (target !== "S" && target !== "P")
        throw new ProtocolViolation(
          `malformed ${what} message: "${printable(target)}" is neither S nor P`,
        );
      parsed = { type: message.type, target, name: fields.string() };
      break;
    }
    case "E":
      parsed = { type: "E", portal: fields.string(), maxRows: fields.int32() };
      break;
    case "d":
      return { type: "d", data: message.body };
    case "f":
      parsed = { type: "f", reason: fields.string() };
      break;
    case "F":
      return { type: "F", body: message.body };
    default:
      parsed = { type: message.type as "S" | "H" | "c" | "X" };
  }
  fields.end();
  return parsed;
}

/** The exact bytes of a frontend message: what the sidecar forwards is what it parsed. */
export function encodeFrontend(parsed: FrontendMessage): Buffer {
  switch (parsed.type) {
    case "Q":
      return message("Q", cstring(parsed.query));
    case "P":
      return message(
        "P",
        Buffer.concat([
          cstring(parsed.name),
          cstring(parsed.query),
          int16List(parsed.parameterTypes, int32),
        ]),
      );
    case "B":
      return message(
        "B",
        Buffer.concat([
          cstring(parsed.portal),
          cstring(parsed.statement),
          int16List(parsed.parameterFormats, int16),
          int16(parsed.values.length),
          ...parsed.values.flatMap((value) =>
            value === null ? [int32(-1)] : [int32(value.length), value],
          ),
          int16List(parsed.resultFormats, int16),
        ]),
      );
    case "D":
    case "C":
      return message(
        parsed.type,
        Buffer.concat([Buffer.from(parsed.target), cstring(parsed.name)]),
      );
    case "E":
      return message("E", Buffer.concat([cstring(parsed.portal), int32(parsed.maxRows)]));
    case "d":
      return message("d", parsed.data);
    case "f":
      return message("f", cstring(parsed.reason));
    case "F":
      return message("F", parsed.body);
    default:
      return message(parsed.type);
  }
}

function int16List(values: number[], encode: (value: number) => Buffer): Buffer {
  return Buffer.concat([int16(values.length), ...values.map(encode)]);
}

function formatCode(code: number, what: string): number {
  if (code !== 0 && code !== 1)
    throw new ProtocolViolation(`malformed ${what} message: format code ${code}`);
  return code;
}

function printable(text: string): string {
  return /^[\x21-\x7e]$/.test(text)
    ? text
    : `\\x${text.charCodeAt(0).toString(16).padStart(2, "0")}`;
}

// Backend messages the sidecar reads.

export interface ColumnDescription {
  name: string;
  tableOid: number;
  column: number;
  typeOid: number;
  typeSize: number;
  typeModifier: number;
  format: number;
}

export function parseRowDescription(body: Buffer): ColumnDescription[] {
  const fields = new FieldReader(body, "RowDescription");
  const count = fields.int16();
  const columns: ColumnDescription[] = [];
  for (let i = 0; i < count; i++) {
    columns.push({
      name: fields.string(),
      tableOid: fields.int32(),
      column: fields.int16(),
      typeOid: fields.int32(),
      typeSize: fields.int16(),
      typeModifier: fields.int32(),
      format: fields.int16(),
    });
  }
  return columns;
}

/** ErrorResponse and NoticeResponse fields by their one-letter code. */
export function parseNoticeFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const code = String.fromCharCode(body[offset] ?? 0);
    const end = body.indexOf(0, offset + 1);
    if (end < 0) break;
    fields.set(code, body.toString("utf8", offset + 1, end));
    offset = end + 1;
  }
  return fields;
}

/** CommandComplete's tag: "SELECT 5", "INSERT 0 1", "UPDATE 3"… */
export function commandTag(body: Buffer): { command: string; rows?: number } {
  const tag = body.toString("utf8", 0, Math.max(0, body.length - 1));
  const words = tag.split(" ");
  const last = words.at(-1) ?? "";
  const rows = /^\d+$/.test(last) ? Number(last) : undefined;
  return { command: words[0] ?? tag, ...(rows === undefined ? {} : { rows }) };
}

// Messages the sidecar writes.

export function message(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = type.charCodeAt(0);
  frame.writeInt32BE(4 + body.length, 1);
  body.copy(frame, 5);
  return frame;
}

export function cstring(text: string): Buffer {
  return Buffer.from(`${text}\0`, "utf8");
}

function int16(value: number): Buffer {
  const buffer = Buffer.allocUnsafe(2);
  buffer.writeInt16BE(value);
  return buffer;
}

function int32(value: number): Buffer {
  const buffer = Buffer.allocUnsafe(4);
  buffer.writeInt32BE(value);
  return buffer;
}

export interface ErrorFields {
  severity: "ERROR" | "FATAL";
  sqlState: string;
  message: string;
  detail?: string;
  hint?: string;
}

export function errorResponse(error: ErrorFields): Buffer {
  const parts = [
    Buffer.from("S"),
    cstring(error.severity),
    Buffer.from("V"),
    cstring(error.severity),
    Buffer.from("C"),
    cstring(error.sqlState),
    Buffer.from("M"),
    cstring(error.message),
  ];
  if (error.detail) parts.push(Buffer.from("D"), cstring(error.detail));
  if (error.hint) parts.push(Buffer.from("H"), cstring(error.hint));
  parts.push(Buffer.from([0]));
  return message("E", Buffer.concat(parts));
}

export const authenticationOk = message("R", int32(0));
export const sslRefused = Buffer.from("N");

export function parameterStatus(name: string, value: string): Buffer {
  return message("S", Buffer.concat([cstring(name), cstring(value)]));
}

export function backendKeyData(processId: number, secretKey: Buffer): Buffer {
  return message("K", Buffer.concat([int32(processId), secretKey]));
}

export function readyForQuery(status: "I" | "T" | "E"): Buffer {
  return message("Z", Buffer.from(status));
}

/** A startup packet: protocol 3.0 and the parameters in order. */
export function startupPacket(parameters: Iterable<[string, string]>): Buffer {
  const body = Buffer.concat([
    int32(startupCodes.protocol3),
    ...[...parameters].flatMap(([name, value]) => [cstring(name), cstring(value)]),
    Buffer.from([0]),
  ]);
  return Buffer.concat([int32(body.length + 4), body]);
}

export function sslRequest(): Buffer {
  return Buffer.concat([int32(8), int32(startupCodes.ssl)]);
}

export function cancelRequest(processId: number, secretKey: Buffer): Buffer {
  return Buffer.concat([
    int32(12 + secretKey.length),
    int32(startupCodes.cancel),
    int32(processId),
    secretKey,
  ]);
}

export function queryMessage(sql: string): Buffer {
  return message("Q", cstring(sql));
}

export function parseMessage(name: string, sql: string): Buffer {
  return message("P", Buffer.concat([cstring(name), cstring(sql), int16(0)]));
}

/** Bind with no parameters and default result formats. */
export function bindMessage(portal: string, statement: string): Buffer {
  return message(
    "B",
    Buffer.concat([cstring(portal), cstring(statement), int16(0), int16(0), int16(0)]),
  );
}

export function describeMessage(target: "S" | "P", name: string): Buffer {
  return message("D", Buffer.concat([Buffer.from(target), cstring(name)]));
}

export function executeMessage(portal: string, maxRows = 0): Buffer {
  return message("E", Buffer.concat([cstring(portal), int32(maxRows)]));
}

export function passwordMessage(body: Buffer): Buffer {
  return message("p", body);
}

/** NegotiateProtocolVersion: the newest minor version served and the options not understood. */
export function negotiateProtocolVersion(minor: number, unknownOptions: string[]): Buffer {
  return message(
    "v",
    Buffer.concat([int32(minor), int32(unknownOptions.length), ...unknownOptions.map(cstring)]),
  );
}
