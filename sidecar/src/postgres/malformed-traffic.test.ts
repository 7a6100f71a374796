// Malformed and truncated frontend traffic through the sidecar to a real PostgreSQL: each bad
// message ends only its own session, with a FATAL ErrorResponse that says what was wrong; the
// server never sees a message it cannot parse (its log holds no protocol error); and the
// listener keeps serving.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, it } from "node:test";
import fc from "fast-check";
import pg from "pg";
import { type PostgresFixture, startPostgresFixture } from "../testing/postgres-fixture.ts";
import {
  bindMessage,
  encodeFrontend,
  executeMessage,
  MessageReader,
  parseMessage,
  parseNoticeFields,
  queryMessage,
  startupPacket,
} from "./protocol.ts";

let fixture: PostgresFixture;
before(async () => {
  fixture = await startPostgresFixture({ actions: ["read"] });
});
after(() => fixture?.stop());

/** Sessions each test sends; every one is a full login through TLS and SCRAM upstream. */
const sessions = Number(process.env.FUZZ_SESSIONS ?? 300);

interface Answer {
  types: string;
  fatal?: Map<string, string>;
}

/** Logs in, sends the bytes, closes the sending side, and reads every answer until the close. */
function exchange(bytes: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = connect(fixture.port, "127.0.0.1");
    const reader = new MessageReader(1 << 24);
    let types = "";
    let fatal: Map<string, string> | undefined;
    let loggedIn = false;
    socket.on("connect", () =>
      socket.write(
        startupPacket([
          ["user", "graph"],
          ["database", "kb"],
        ]),
      ),
    );
    socket.on("data", (chunk) => {
      for (const message of reader.push(chunk)) {
        types += message.type;
        if (message.type === "E") {
          const fields = parseNoticeFields(message.body);
          if (fields.get("S") === "FATAL") fatal = fields;
        }
        if (message.type === "Z" && !loggedIn) {
          loggedIn = true;
          socket.end(bytes);
        }
      }
    });
    socket.on("error", reject);
    socket.on("close", () => resolve({ types, ...(fatal ? { fatal } : {}) }));
    socket.setTimeout(10_000, () => reject(new Error(`no close after ${types}`)));
  });
}

const valid = [
  queryMessage("SELECT 1"),
  parseMessage("s1", "SELECT $1::int"),
  bindMessage("", "s1"),
  executeMessage("", 0),
  encodeFrontend({ type: "S" }),
  encodeFrontend({ type: "D", target: "S", name: "s1" }),
  encodeFrontend({ type: "C", target: "P", name: "" }),
  encodeFrontend({ type: "H" }),
];

it("ends a session on malformed traffic with a clear FATAL error, and forwards none of it", async () => {
  const cases = fc.sample(
    fc.record({
      prefix: fc.array(fc.constantFrom(...valid), { maxLength: 3 }),
      message: fc.constantFrom(...valid),
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 3,
      }),
      cut: fc.option(fc.nat(), { nil: undefined }),
    }),
    { numRuns: sessions, seed: 4242 },
  );
  let fatal = 0;
  const problems: string[] = [];
  for (let i = 0; i < cases.length; i += 8) {
    const answers = await Promise.all(
      cases.slice(i, i + 8).map(async ({ prefix, message, flips, cut }) => {
        const bad = Buffer.from(message);
        for (const [at, value] of flips) bad[at % bad.length] = value;
        const sent = Buffer.concat([
          ...prefix,
          cut === undefined ? bad : bad.subarray(0, cut % bad.length),
        ]);
        return exchange(sent);
      }),
    );
    for (const answer of answers) {
      if (!answer.types.startsWith("R")) problems.push(`no login: ${answer.types}`);
      if (!answer.fatal) continue;
      fatal++;
      const code = answer.fatal.get("C") ?? "";
      if (!["08P01", "22021", "54000"].includes(code))
        problems.push(`FATAL ${code}: ${answer.fatal.get("M")}`);
      if (!/connection "kb-postgres": /.test(answer.fatal.get("M") ?? ""))
        problems.push(`unclear: ${answer.fatal.get("M")}`);
    }
  }
  assert.deepEqual(problems, []);
  assert.ok(fatal > sessions / 10, `${fatal} of ${sessions} sessions got a FATAL error`);
  assert.doesNotMatch(
    fixture.server.log(),
    /invalid frontend message type|invalid message format|unexpected message type|insufficient data left in message|invalid string in message/,
  );
  // The listener still serves.
  const graph = new pg.Client({ connectionString: fixture.url, password: "x" });
  await graph.connect();
  assert.equal((await graph.query("SELECT 41 + 1 AS n")).rows[0].n, 42);
  await graph.end();
});
