// The sidecar's session events on disk (the pod's emptyDir), so none is lost when the operator
// is unreachable or the sidecar is killed: each event gets the run's next sequence number and
// is appended to a segment file, at once or with the others of the same event-loop turn; events
// leave the disk only once the operator has acknowledged them. Bounded: when full, new events
// are refused and the data path fails closed rather than proceed unrecorded.
import {
  closeSync,
  constants,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import {
  maxEventTextLength,
  type SessionEvent,
  type SessionRecord,
  sessionEventSchemaVersion,
} from "../../../api/session-events.ts";

export interface EventBufferOptions {
  directory: string;
  run: SessionEvent["run"];
  /** Most bytes kept on disk, unacknowledged events included; default 64 MiB. */
  maxBytes?: number;
  /** A segment file is closed for new events past this size; default 1 MiB. */
  segmentBytes?: number;
}

/** The buffer is full of unacknowledged events: nothing more may happen unrecorded. */
export class EventBufferFullError extends Error {
  override name = "EventBufferFullError";
}

interface Segment {
  /** Sequence number of the segment's first event (its file name). */
  first: number;
  last: number;
  bytes: number;
  /** Where the first unacknowledged line starts, when known (0: read from the start). */
  readFrom: number;
}

const segmentName = /^(\d{12})\.jsonl$/;
const ackedFile = "acked";
/** The acknowledged sequence number is written at this width, over the previous one. */
const ackedDigits = 16;
/** Room kept for one more event; real ones are a few hundred bytes. */
const maxEventBytes = 4096;

export class EventBuffer {
  readonly #directory: string;
  /** Every line's start up to its sequence number: the schema and the run never change. */
  readonly #linePrefix: string;
  readonly #maxBytes: number;
  readonly #segmentBytes: number;
  readonly #segments: Segment[] = [];
  readonly #waiters = new Set<() => void>();
  #acked = 0;
  #ackedFd: number | undefined;
  #next = 1;
  #fd: number | undefined;
  /** Every segment's bytes, queued lines included. */
  #bytes = 0;
  /** Lines numbered but not yet written, all for the newest segment. */
  #queued: string[] = [];
  #flushScheduled = false;
  /** Why the disk refused queued events; the buffer then takes no more. */
  #writeError: Error | undefined;
  /** Where each event of the last read() ends in its segment: acknowledge() resumes there. */
  #ends = new Map<number, { segment: Segment; end: number }>();

  constructor(options: EventBufferOptions) {
    this.#directory = options.directory;
    this.#linePrefix = `{"schema":${sessionEventSchemaVersion},"run":${JSON.stringify(options.run)},"seq":`;
    this.#maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.#segmentBytes = options.segmentBytes ?? 1024 * 1024;
    mkdirSync(this.#directory, { recursive: true });
    this.#recover();
  }

  /** The highest sequence number the operator acknowledged. */
  get acked(): number {
    return this.#acked;
  }

  /** The highest sequence number written (0 before the first event). */
  get last(): number {
    return this.#next - 1;
  }

  get pending(): number {
    return this.last - this.#acked;
  }

  /** True while less than a full-size event fits. */
  get full(): boolean {
    return this.bytes + maxEventBytes > this.#maxBytes;
  }

  /** Whether a new event would be kept: not full, and the disk took every write so far. */
  get accepting(): boolean {
    return this.#writeError === undefined && !this.full;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Writes the event to disk before it returns, with any queued before it, and returns its
   * sequence number; throws when full.
   */
  append(record: SessionRecord): number {
    const seq = this.enqueue(record);
    this.flush();
    this.#refuseIfBroken();
    return seq;
  }

  /** A refusal is on disk before the graph is answered; any other event goes with its turn. */
  record(record: SessionRecord): number {
    return record.kind === "denied" ? this.append(record) : this.enqueue(record);
  }

  /**
   * Numbers the event at once and writes it at the end of this event-loop turn, in one write
   * with the others queued meanwhile (or earlier, when flush() or append() comes first).
   */
  enqueue(record: SessionRecord): number {
    this.#refuseIfBroken();
    const seq = this.#next;
    // The event is {schema, run, seq, ...record}, serialized without building it.
    const fields = JSON.stringify(withinLimits(record));
    const line = `${this.#linePrefix}${seq}${fields.length > 2 ? `,${fields.slice(1)}` : "}"}\n`;
    const length = Buffer.byteLength(line);
    if (this.#bytes + length > this.#maxBytes) {
      throw new EventBufferFullError(
        `the session event buffer holds ${this.pending} unacknowledged events (${this.#bytes} bytes, at most ${this.#maxBytes}); the operator has not taken them`,
      );
    }
    let segment = this.#segments.at(-1);
    if (!segment || this.#fd === undefined || segment.bytes >= this.#segmentBytes) {
      segment = this.#openSegment(seq);
    }
    this.#queued.push(line);
    segment.last = seq;
    segment.bytes += length;
    this.#bytes += length;
    this.#next++;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flushQueued);
    }
    return seq;
  }

  /**
   * Writes the queued events now. It never throws (it also runs at the end of a turn, with no
   * caller): a failed or short write is kept, and every later event is refused with it.
   */
  flush(): void {
    if (this.#queued.length === 0) return;
    const text = Buffer.from(this.#queued.join(""));
    const first = this.#next - this.#queued.length;
    this.#queued = [];
    try {
      // One write: a kill leaves at most a torn last line, which recovery drops.
      const written = writeSync(this.#fd as number, text);
      if (written < text.length) throw new Error(`wrote ${written} of ${text.length} bytes`);
    } catch (error) {
      this.#writeError ??= error as Error;
      // The lost events were never kept: the shipper must not wait for them.
      const segment = this.#segments.at(-1) as Segment;
      segment.last = first - 1;
      segment.bytes -= text.length;
      this.#bytes -= text.length;
      this.#next = first;
    }
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }

  #refuseIfBroken(): void {
    if (this.#writeError) {
      throw new Error(
        `session events can no longer be written to ${this.#directory}: ${this.#writeError.message}`,
        { cause: this.#writeError },
      );
    }
  }

  readonly #flushQueued = () => {
    this.#flushScheduled = false;
    this.flush();
  };

  /** Up to maxEvents unacknowledged events in order, at most maxBytes of them (at least one). */
  read(maxEvents: number, maxBytes: number): SessionEvent[] {
    this.flush();
    const events: SessionEvent[] = [];
    this.#ends.clear();
    let bytes = 0;
    for (const segment of this.#segments) {
      if (segment.last <= this.#acked) continue;
      // Only the unacknowledged part of the segment, and no more than one batch of it.
      const chunk = this.#readBytes(segment, segment.readFrom, maxBytes + maxEventBytes);
      let start = 0;
      for (let newline = chunk.indexOf(10); newline !== -1; newline = chunk.indexOf(10, start)) {
        const length = newline + 1 - start;
        const event = JSON.parse(chunk.toString("utf8", start, newline)) as SessionEvent;
        start = newline + 1;
        if (event.seq <= this.#acked) continue;
        bytes += length;
        if (events.length > 0 && (events.length >= maxEvents || bytes > maxBytes)) return events;
        events.push(event);
        this.#ends.set(event.seq, { segment, end: segment.readFrom + start });
      }
    }
    return events;
  }

  /** Records the operator's acknowledgement and deletes the segments it covers entirely. */
  acknowledge(seq: number): void {
    if (seq <= this.#acked) return;
    this.flush();
    this.#acked = Math.min(seq, this.last);
    const position = this.#ends.get(this.#acked);
    if (position) position.segment.readFrom = position.end;
    // One fixed-width write over the old number: a kill leaves the old or the new one, never a
    // torn one; a rename instead made the filesystem flush the file while the data path waited.
    this.#ackedFd ??= openSync(
      join(this.#directory, ackedFile),
      constants.O_RDWR | constants.O_CREAT,
    );
    writeSync(this.#ackedFd, String(this.#acked).padStart(ackedDigits, "0"), 0);
    while (this.#segments.length > 0 && (this.#segments[0]?.last ?? 0) <= this.#acked) {
      const segment = this.#segments.shift() as Segment;
      this.#bytes -= segment.bytes;
      if (this.#segments.length === 0) this.#closeSegment();
      rmSync(this.#path(segment.first), { force: true });
    }
  }

  /** Resolves once an event newer than seq exists, or after timeoutMs. */
  async waitForEvents(seq: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.last > seq) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener("abort", done, { once: true });
      this.#waiters.add(done);
    });
  }

  close(): void {
    this.#closeSegment();
    if (this.#ackedFd !== undefined) closeSync(this.#ackedFd);
    this.#ackedFd = undefined;
  }

  #recover(): void {
    try {
      this.#acked = Number(readFileSync(join(this.#directory, ackedFile), "utf8")) || 0;
    } catch {
      this.#acked = 0;
    }
    const firsts = readdirSync(this.#directory)
      .map((name) => segmentName.exec(name)?.[1])
      .filter((first): first is string => first !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    for (const first of firsts) {
      const segment = this.#recoverSegment(first);
      if (segment) {
        this.#segments.push(segment);
        this.#bytes += segment.bytes;
      }
    }
    this.#next = Math.max(this.#acked, this.#segments.at(-1)?.last ?? 0) + 1;
    // Segments the operator acknowledged before the restart go now.
    const acked = this.#acked;
    this.#acked = 0;
    this.acknowledge(acked);
    this.#acked = acked;
  }

  /** Reads a segment back; a torn last line (a kill mid-write) is cut off. */
  #recoverSegment(first: number): Segment | undefined {
    const path = this.#path(first);
    const text = readFileSync(path, "utf8");
    let valid = 0;
    let last = first - 1;
    for (const line of text.split("\n")) {
      const end = valid + Buffer.byteLength(line) + 1;
      if (end > Buffer.byteLength(text)) break;
      try {
        last = (JSON.parse(line) as SessionEvent).seq;
      } catch {
        break;
      }
      valid = end;
    }
    if (valid < statSync(path).size) {
      const fd = openSync(path, "r+");
      ftruncateSync(fd, valid);
      closeSync(fd);
    }
    if (valid === 0) {
      rmSync(path, { force: true });
      return undefined;
    }
    return { first, last, bytes: valid, readFrom: 0 };
  }

  #openSegment(first: number): Segment {
    this.#closeSegment();
    this.#fd = openSync(this.#path(first), "a");
    const segment = { first, last: first - 1, bytes: 0, readFrom: 0 };
    this.#segments.push(segment);
    return segment;
  }

  /** Writes what is queued for the segment, then closes it. */
  #closeSegment(): void {
    this.flush();
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #readBytes(segment: Segment, from: number, most: number): Buffer {
    const fd = openSync(this.#path(segment.first), "r");
    try {
      const buffer = Buffer.allocUnsafe(Math.max(0, Math.min(segment.bytes - from, most)));
      const read = readSync(fd, buffer, 0, buffer.length, from);
      return buffer.subarray(0, read);
    } finally {
      closeSync(fd);
    }
  }

  #path(first: number): string {
    return join(this.#directory, `${String(first).padStart(12, "0")}.jsonl`);
  }
}

const textFields = ["connection", "method", "path", "rule", "reason"] as const;

/**
 * The record with every text cut to what the operator takes: a graph chooses its path, an
 * approver the reason a held command's decision quotes, and a batch the operator refuses would
 * never ship.
 */
function withinLimits(record: SessionRecord): SessionRecord {
  const long = textFields.filter((field) => (record[field]?.length ?? 0) > maxEventTextLength);
  const longApproval = (record.approval?.message.length ?? 0) > maxEventTextLength;
  if (long.length === 0 && !longApproval) return record;
  const cut: SessionRecord = { ...record };
  for (const field of long) cut[field] = shortened(record[field] as string);
  if (record.approval && longApproval)
    cut.approval = { ...record.approval, message: shortened(record.approval.message) };
  return cut;
}

function shortened(text: string): string {
  return `${text.slice(0, maxEventTextLength - 1)}…`;
}
