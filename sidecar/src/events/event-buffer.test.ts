// The on-disk event buffer: sequence numbers without gaps across restarts, events kept until
// acknowledged, a kill mid-write costing at most the torn line, and a bound that refuses.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { maxEventTextLength, type SessionRecord } from "../../../api/session-events.ts";
import { parseEventsBatch } from "../../../operator/src/sessions/events-batch.ts";
import { EventBuffer, EventBufferFullError } from "./event-buffer.ts";

const run = { namespace: "agents", name: "kb-search", uid: "0b6f2a8e-5d1c-4d3e-9a47-3c1b2f6e8d10" };
const record = (path: string): SessionRecord => ({
  time: "2026-11-28T12:00:00.000Z",
  kind: "request",
  connection: "kb-api",
  method: "GET",
  path,
  status: 200,
});

describe("the session event buffer", () => {
  let directory: string;
  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), "lgjit-events-"));
  });
  afterEach(() => rmSync(directory, { recursive: true, force: true }));

  it("numbers events from 1 and reads them back in order, in bounded batches", () => {
    const buffer = new EventBuffer({ directory, run });
    for (let i = 0; i < 10; i++) assert.equal(buffer.append(record(`/v1/docs/${i}`)), i + 1);
    const batch = buffer.read(4, 1024 * 1024);
    assert.deepEqual(
      batch.map((event) => event.seq),
      [1, 2, 3, 4],
    );
    assert.deepEqual(batch[0], { schema: 1, run, seq: 1, ...record("/v1/docs/0") });
    assert.equal(buffer.read(100, 1).length, 1, "a batch holds at least one event");
    buffer.close();
  });

  it("cuts a path longer than the operator takes, so a graph's long URL cannot stall shipping", () => {
    const buffer = new EventBuffer({ directory, run });
    buffer.append({
      ...record(`/v1/${"a".repeat(5_000)}`),
      rule: "r".repeat(3_000),
      approval: { command: "r-1", decision: "Approved", message: "b".repeat(3_000) },
    });
    const [event] = buffer.read(1, 1024 * 1024);
    assert.equal(event?.path?.length, maxEventTextLength);
    assert.ok(event?.path?.endsWith("…"));
    assert.equal(event?.rule?.length, maxEventTextLength);
    assert.equal(
      event?.approval?.message.length,
      maxEventTextLength,
      "an approver's long reason too",
    );
    const shipped = parseEventsBatch(JSON.stringify({ events: [event] }), run);
    assert.deepEqual(shipped[0], event, "the operator takes the event as written");
    buffer.close();
  });

  it("numbers queued events at once and writes them in one go by the end of the turn", async () => {
    const buffer = new EventBuffer({ directory, run });
    const onDisk = () =>
      readdirSync(directory)
        .filter((name) => name.endsWith(".jsonl"))
        .map((name) => readFileSync(join(directory, name), "utf8"))
        .join("");
    assert.equal(buffer.enqueue(record("/a")), 1);
    assert.equal(buffer.enqueue(record("/b")), 2);
    assert.equal(onDisk(), "");
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(onDisk().split("\n").length - 1, 2, "the turn ended with events still queued");
    buffer.enqueue(record("/c"));
    assert.equal(buffer.append(record("/refused")), 4);
    assert.deepEqual(
      onDisk()
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line).path),
      ["/a", "/b", "/c", "/refused"],
      "an appended event is on disk when append returns, after those queued before it",
    );
    // record(): a refusal at once, anything else with its turn.
    buffer.record(record("/later"));
    buffer.record({ ...record("/denied"), kind: "denied", status: 403 });
    assert.deepEqual(
      onDisk()
        .trim()
        .split("\n")
        .slice(-2)
        .map((line) => JSON.parse(line).path),
      ["/later", "/denied"],
    );
    buffer.record(record("/next-turn"));
    assert.ok(!onDisk().includes("/next-turn"), "a finished request waits for its turn's write");
    buffer.close();
  });

  it("drops only acknowledged events, and whole segments from the disk", () => {
    const buffer = new EventBuffer({ directory, run, segmentBytes: 400 });
    for (let i = 0; i < 20; i++) buffer.append(record(`/v1/docs/${i}`));
    const segments = readdirSync(directory).filter((name) => name.endsWith(".jsonl")).length;
    assert.ok(segments > 3, `${segments} segments`);
    buffer.acknowledge(12);
    assert.equal(buffer.pending, 8);
    assert.equal(buffer.read(100, 1024 * 1024)[0]?.seq, 13);
    assert.ok(readdirSync(directory).filter((name) => name.endsWith(".jsonl")).length < segments);
    buffer.acknowledge(20);
    assert.equal(buffer.pending, 0);
    assert.deepEqual(
      readdirSync(directory).filter((name) => name.endsWith(".jsonl")),
      [],
    );
    assert.equal(buffer.append(record("/after")), 21, "numbering goes on after an empty buffer");
    buffer.close();
  });

  it("survives a kill: a new process on the same folder keeps every unacknowledged event and the numbering", () => {
    const first = new EventBuffer({ directory, run, segmentBytes: 400 });
    for (let i = 0; i < 9; i++) first.append(record(`/v1/docs/${i}`));
    first.acknowledge(3);
    // Killed mid-write: the last line is torn, and nothing was closed.
    const newest = readdirSync(directory)
      .filter((name) => name.endsWith(".jsonl"))
      .sort()
      .at(-1);
    appendFileSync(join(directory, newest ?? ""), '{"schema":1,"seq":10,"ki');

    const second = new EventBuffer({ directory, run, segmentBytes: 400 });
    assert.equal(second.acked, 3);
    assert.deepEqual(
      second.read(100, 1024 * 1024).map((event) => event.seq),
      [4, 5, 6, 7, 8, 9],
    );
    assert.equal(second.append(record("/again")), 10, "the torn event's number is reused");
    assert.deepEqual(
      second.read(100, 1024 * 1024).map((event) => event.path),
      [
        "/v1/docs/3",
        "/v1/docs/4",
        "/v1/docs/5",
        "/v1/docs/6",
        "/v1/docs/7",
        "/v1/docs/8",
        "/again",
      ],
    );
    second.close();
  });

  it("refuses new events when full, saying what it holds, until acknowledgements make room", () => {
    const buffer = new EventBuffer({ directory, run, maxBytes: 1000 });
    let appended = 0;
    assert.throws(
      () => {
        for (;;) {
          buffer.append(record("/v1/docs/x"));
          appended++;
        }
      },
      (error: unknown) =>
        error instanceof EventBufferFullError &&
        error.message.includes(`holds ${appended} unacknowledged events`),
    );
    buffer.acknowledge(appended);
    assert.equal(buffer.append(record("/room")), appended + 1);
    buffer.close();
  });

  it("survives a disk that refuses the end of a turn's write: keeps what it wrote, takes no more", () => {
    // A real short write and EFBIG: the process may write files of at most 600 bytes.
    const script = `
      import { EventBuffer } from ${JSON.stringify(new URL("./event-buffer.ts", import.meta.url).pathname)};
      const [directory, run, record] = ${JSON.stringify([directory, run, record("/v1/docs")])};
      const buffer = new EventBuffer({ directory, run });
      const turn = () => new Promise((resolve) => setImmediate(resolve));
      buffer.record(record);
      await turn();
      for (let i = 0; i < 20; i++) buffer.record(record);
      await turn();
      let refused;
      try { buffer.record({ ...record, kind: "denied" }); } catch (error) { refused = error.message; }
      const read = buffer.read(100, 1 << 20).map((event) => event.seq);
      console.log(JSON.stringify({ accepting: buffer.accepting, pending: buffer.pending, read, refused }));
    `;
    const output = execFileSync(
      "prlimit",
      ["--fsize=600", process.execPath, "--input-type=module", "-e", script],
      { encoding: "utf8" },
    );
    const outcome = JSON.parse(output);
    assert.deepEqual([outcome.accepting, outcome.pending, outcome.read], [false, 1, [1]]);
    assert.match(
      outcome.refused,
      /session events can no longer be written to .*: wrote \d+ of \d+ bytes/,
    );
  });
});
