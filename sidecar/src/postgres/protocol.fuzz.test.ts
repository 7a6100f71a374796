// Fuzzing of the frontend wire parser, the sidecar's first line against a hostile graph:
// generated messages round-trip exactly however they are cut into reads, and mutated or truncated
// ones either parse to a message whose bytes are exactly what arrived (so what is forwarded is
// what was parsed) or are refused with a ProtocolViolation; nothing else is ever thrown.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  encodeFrontend,
  type FrontendMessage,
  MessageReader,
  maxStartupBytes,
  ProtocolViolation,
  parseFrontend,
  parseStartup,
} from "./protocol.ts";

/** Cases per property: 10^5 in make unit, 10^6 in make fuzz. */
const runs = Number(process.env.FUZZ_RUNS ?? 100_000);

const text = fc.string({
  unit: fc.constantFrom("a", "Z", "0", " ", ";", "'", "$", "é", "€", "\\"),
  maxLength: 24,
});
const bytes = fc.uint8Array({ maxLength: 48 }).map((array) => Buffer.from(array));
const format = fc.constantFrom(0, 1);
const int32 = fc.integer({ min: -2147483648, max: 2147483647 });

const frontendMessage: fc.Arbitrary<FrontendMessage> = fc.oneof(
  fc.record({ type: fc.constant("Q" as const), query: text }),
  fc.record({
    type: fc.constant("P" as const),
    name: text,
    query: text,
    parameterTypes: fc.array(int32, { maxLength: 4 }),
  }),
  fc.record({
    type: fc.constant("B" as const),
    portal: text,
    statement: text,
    parameterFormats: fc.array(format, { maxLength: 3 }),
    values: fc.array(fc.option(bytes, { nil: null }), { maxLength: 4 }),
    resultFormats: fc.array(format, { maxLength: 3 }),
  }),
  fc.record({
    type: fc.constantFrom("D" as const, "C" as const),
    target: fc.constantFrom("S" as const, "P" as const),
    name: text,
  }),
  fc.record({ type: fc.constant("E" as const), portal: text, maxRows: int32 }),
  fc.record({ type: fc.constantFrom("S" as const, "H" as const, "c" as const, "X" as const) }),
  fc.record({ type: fc.constant("d" as const), data: bytes }),
  fc.record({ type: fc.constant("f" as const), reason: text }),
  fc.record({ type: fc.constant("F" as const), body: bytes }),
);

/** Cuts bytes into reads at the given points. */
function chunks(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (data.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let start = 0;
  for (const point of points) {
    pieces.push(data.subarray(start, point));
    start = point;
  }
  pieces.push(data.subarray(start));
  return pieces;
}

/** A mutation of a message's bytes: flips, a new length, truncation, extra bytes, a NUL. */
const mutation = fc.oneof(
  fc.record({
    kind: fc.constant("flip" as const),
    at: fc.nat(),
    value: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({ kind: fc.constant("length" as const), delta: fc.integer({ min: -8, max: 8 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("append" as const), extra: bytes }),
  fc.record({ kind: fc.constant("nul" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("type" as const), value: fc.integer({ min: 0, max: 255 }) }),
);

type Mutation = { kind: string; at?: number; value?: number; delta?: number; extra?: Buffer };

function mutate(frame: Buffer, mutations: Mutation[]): Buffer {
  let data = Buffer.from(frame);
  for (const change of mutations) {
    switch (change.kind) {
      case "flip":
        if (data.length > 0) data[(change.at ?? 0) % data.length] = change.value ?? 0;
        break;
      case "length":
        // Wraps like the 32-bit field it changes: a flipped sign bit plus a delta stays a length.
        if (data.length >= 5) data.writeInt32BE((data.readInt32BE(1) + (change.delta ?? 0)) | 0, 1);
        break;
      case "truncate":
        data = data.subarray(0, (change.at ?? 0) % (data.length + 1));
        break;
      case "append":
        data = Buffer.concat([data, change.extra ?? Buffer.alloc(0)]);
        if (data.length >= 5) data.writeInt32BE(data.length - 1, 1);
        break;
      case "nul":
        if (data.length > 5) data[5 + ((change.at ?? 0) % (data.length - 5))] = 0;
        break;
      case "type":
        if (data.length > 0) data[0] = change.value ?? 0;
        break;
    }
  }
  return data;
}

describe("the frontend parser", () => {
  it("reads every generated message back exactly, however it is cut into reads", () => {
    fc.assert(
      fc.property(
        fc.array(frontendMessage, { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (messages, cuts) => {
          const wire = Buffer.concat(messages.map(encodeFrontend));
          const reader = new MessageReader(1 << 20);
          const read = chunks(wire, cuts).flatMap((chunk) => reader.push(chunk));
          assert.equal(reader.buffered, 0);
          assert.equal(read.length, messages.length);
          read.forEach((message, i) => {
            const parsed = parseFrontend(message);
            assert.deepEqual(parsed, { ...messages[i] });
            assert.ok(encodeFrontend(parsed).equals(message.frame));
          });
        },
      ),
      { numRuns: runs },
    );
  });

  it("refuses a mutated message with a ProtocolViolation, or forwards exactly what it parsed", () => {
    let refused = 0;
    let parsedCount = 0;
    fc.assert(
      fc.property(
        frontendMessage,
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        fc.array(fc.nat(), { maxLength: 3 }),
        (message, mutations, cuts) => {
          const wire = mutate(encodeFrontend(message), mutations);
          const reader = new MessageReader(1 << 20);
          try {
            for (const chunk of chunks(wire, cuts)) {
              for (const frame of reader.push(chunk)) {
                const parsed = parseFrontend(frame);
                parsedCount++;
                assert.ok(
                  encodeFrontend(parsed).equals(frame.frame),
                  "forwarded bytes differ from the parsed message",
                );
              }
            }
          } catch (error) {
            if (!(error instanceof ProtocolViolation)) throw error;
            assert.match(error.message, /\S/);
            assert.match(error.sqlState, /^[0-9A-Z]{5}$/);
            refused++;
          }
        },
      ),
      { numRuns: runs },
    );
    assert.ok(refused > runs / 10, `${refused} refused`);
    assert.ok(parsedCount > 0);
  });

  it("parses or refuses any startup packet without another error", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 96 }),
        fc.boolean(),
        (array, protocol3) => {
          const packet = Buffer.from(array);
          packet.writeInt32BE(packet.length, 0);
          if (protocol3) packet.writeInt32BE(196608, 4);
          try {
            const startup = parseStartup(packet);
            assert.ok(packet.length <= maxStartupBytes);
            for (const [name, value] of startup.parameters)
              assert.equal(typeof name + typeof value, "stringstring");
          } catch (error) {
            if (!(error instanceof ProtocolViolation)) throw error;
          }
        },
      ),
      { numRuns: Math.max(1_000, runs / 10) },
    );
  });
});
