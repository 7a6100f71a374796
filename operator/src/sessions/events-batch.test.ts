// A sidecar's batch of session events is stored only if every event is of the schema, of the run
// the token names and within bounds; anything else is refused whole, naming what was wrong.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  maxEventsPerBatch,
  maxQueryNameLength,
  maxQueryNames,
  maxSqlStatementLength,
  maxSqlTables,
  type SessionEvent,
  sessionEventKinds,
} from "../../../api/session-events.ts";
import { HttpError } from "../server/https-server.ts";
import { parseEventsBatch } from "./events-batch.ts";

const run = { namespace: "agents", name: "kb-search", uid: "6f1c2a9e-0d4b-4c1e-9a57-3b8e2f0d7c11" };
const time = "2025-05-14T09:30:12.345Z";

/** One realistic event of every kind the schema has (tsc insists on every kind). */
const examples: Record<(typeof sessionEventKinds)[number], SessionEvent> = {
  request: {
    schema: 1,
    run,
    seq: 1,
    time,
    kind: "request",
    connection: "kb-api",
    method: "GET",
    path: "/v1/docs",
    query: ["page", "export"],
    status: 200,
    bytesIn: 0,
    bytesOut: 5120,
    durationMs: 12.5,
    rule: "read-docs",
  },
  statement: {
    schema: 1,
    run,
    seq: 2,
    time,
    kind: "statement",
    connection: "warehouse",
    durationMs: 3.75,
    rule: "read",
    sql: {
      command: "SELECT",
      action: "read",
      statement: "SELECT title FROM docs WHERE id = $1",
      fingerprint: "a0ead580058af585",
      tables: ["public.docs"],
      rows: 3,
    },
  },
  denied: {
    schema: 1,
    run,
    seq: 3,
    time,
    kind: "denied",
    connection: "kb-api",
    method: "DELETE",
    path: "/v1/docs/42",
    status: 403,
    rule: "read-docs",
    reason: "ApprovalDenied",
    approval: {
      command: "kb-writer-x7k2q",
      decision: "Denied",
      message: "denied by bob@example.com: not during the freeze",
    },
  },
  masked: {
    schema: 1,
    run,
    seq: 4,
    time,
    kind: "masked",
    connection: "warehouse",
    masked: { email: 2, "$.users[*].ssn": 1, nulled: 0 },
    sql: {
      command: "SELECT",
      action: "read",
      statement: "SELECT email FROM users",
      fingerprint: "4f3a2b1c0d9e8f7a",
      tables: ["users"],
      rows: 2,
    },
  },
  tunnel: {
    schema: 1,
    run,
    seq: 5,
    time,
    kind: "tunnel",
    connection: "ssh-bastion",
    bytesIn: 4096,
    bytesOut: 65536,
    durationMs: 60000,
  },
  "credential-refresh": {
    schema: 1,
    run,
    seq: 6,
    time,
    kind: "credential-refresh",
    connection: "kb-api",
    reason: "TokenExpiring",
  },
  error: {
    schema: 1,
    run,
    seq: 7,
    time,
    kind: "error",
    connection: "warehouse",
    reason: "UpstreamRefused",
    sql: {
      command: "INSERT",
      action: "write",
      statement: "INSERT INTO docs (title) VALUES ($1)",
      fingerprint: "9b8c7d6e5f4a3b2c",
      error: "42501",
    },
  },
};

/** A valid request event with the given fields replaced (or, given undefined, removed). */
function event(changes: Record<string, unknown> = {}, seq = 1): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...examples.request, seq, ...changes };
  for (const [field, value] of Object.entries(changes)) {
    if (value === undefined) delete merged[field];
  }
  return merged;
}

/** A valid statement event whose SQL record has the given fields replaced or removed. */
function statement(changes: Record<string, unknown>): Record<string, unknown> {
  const sql: Record<string, unknown> = { ...examples.statement.sql, ...changes };
  for (const [field, value] of Object.entries(changes)) {
    if (value === undefined) delete sql[field];
  }
  return { ...examples.statement, seq: 1, sql };
}

const batch = (...events: unknown[]) => JSON.stringify({ events });

/** The refusal parseEventsBatch throws for the body; fails the test if it accepts it. */
function refusal(body: string, token = run): HttpError {
  try {
    parseEventsBatch(body, token);
  } catch (error) {
    assert.ok(error instanceof HttpError, `expected an HttpError, got ${String(error)}`);
    return error;
  }
  assert.fail(`the batch was accepted: ${body.slice(0, 200)}`);
}

function assertRefused(body: string, why: string | RegExp, token = run): void {
  const error = refusal(body, token);
  assert.equal(error.status, 400);
  assert.equal(error.reason, "BadRequest");
  if (typeof why === "string") assert.equal(error.message, `session events refused: ${why}`);
  else assert.match(error.message, why);
}

const accepts = (...events: unknown[]) => parseEventsBatch(batch(...events), run);

describe("parseEventsBatch", () => {
  describe("accepts", () => {
    for (const kind of sessionEventKinds) {
      it(`a ${kind} event, returned as sent`, () => {
        assert.deepEqual(accepts(examples[kind]), [examples[kind]]);
      });
    }

    it("control characters in what the graph shapes, stored as sent (refusing them would stall its own session's shipping)", () => {
      // A quoted identifier may hold any character but NUL: `SELECT 1 FROM "docs<ESC>[2J"`.
      const identifier = "docs\u001b[2J\u0007";
      const sql = statement({
        statement: `SELECT title\n\tFROM "${identifier}" WHERE id = $1`,
        tables: [identifier],
      });
      const path = event({ path: "/v1/\u0001docs", query: ["a\rb"] }, 2);
      assert.deepEqual(accepts(sql, path), [sql, path]);
    });

    it("a batch of every kind at once, in the order sent", () => {
      const all = sessionEventKinds.map((kind) => examples[kind]);
      assert.deepEqual(accepts(...all), all);
    });

    it("an event with only the required fields", () => {
      const bare = { schema: 1, run, seq: 1, time, kind: "tunnel" };
      assert.deepEqual(accepts(bare), [bare]);
    });

    it(`exactly ${maxEventsPerBatch} events`, () => {
      const events = Array.from({ length: maxEventsPerBatch }, (_, i) => event({}, i + 1));
      assert.equal(accepts(...events).length, maxEventsPerBatch);
    });

    it("every field at its largest allowed size", () => {
      const largest = {
        ...event({
          connection: "c".repeat(2048),
          method: "M".repeat(2048),
          path: `/${"p".repeat(2047)}`,
          rule: "r".repeat(2048),
          reason: "R".repeat(2048),
          query: Array.from({ length: maxQueryNames }, (_, i) =>
            `${i}`.padEnd(maxQueryNameLength, "q"),
          ),
          masked: Object.fromEntries(
            Array.from({ length: 32 }, (_, i) => [`${i}`.padEnd(128, "m"), i]),
          ),
          seq: Number.MAX_SAFE_INTEGER,
        }),
        sql: {
          command: "C".repeat(64),
          action: "admin",
          statement: "S".repeat(maxSqlStatementLength),
          fingerprint: "f".repeat(64),
          tables: Array.from({ length: maxSqlTables }, (_, i) => `${i}`.padEnd(256, "t")),
          rows: Number.MAX_SAFE_INTEGER,
          error: "XX000",
        },
      };
      assert.deepEqual(accepts(largest), [largest]);
    });

    it("every SQL action the grants know", () => {
      for (const action of ["read", "write", "ddl", "admin"]) {
        assert.equal(accepts(statement({ action }))[0]?.sql?.action, action);
      }
    });

    it("a SQL record without its optional fields (plumbing such as BEGIN)", () => {
      const begin = statement({
        command: "BEGIN",
        statement: "BEGIN",
        action: undefined,
        tables: undefined,
        rows: undefined,
      });
      assert.deepEqual(accepts(begin), [begin]);
    });

    it("keeps only the token's namespace, name and uid as the event's run", () => {
      const [parsed] = accepts(event({ run: { ...run, phase: "Running", owner: "mallory" } }));
      assert.deepEqual(parsed?.run, run);
    });
  });

  describe("refuses a body that", () => {
    it("is not JSON", () => {
      assertRefused("{", /^session events refused: the body is not JSON: /);
      assertRefused("", /^session events refused: the body is not JSON: /);
      assertRefused("events=1", /^session events refused: the body is not JSON: /);
    });

    it(`has no events, or not 1 to ${maxEventsPerBatch} of them`, () => {
      const why = `the body must be {"events": [...]} with 1 to ${maxEventsPerBatch} events`;
      for (const body of ["null", "[]", "{}", "1", '"events"', '{"events":{}}', '{"events":[]}']) {
        assertRefused(body, why);
      }
      const tooMany = Array.from({ length: maxEventsPerBatch + 1 }, (_, i) => event({}, i + 1));
      assertRefused(batch(...tooMany), why);
    });

    it("holds an event that is not an object", () => {
      assertRefused(batch(event(), null), "events[1] is not an object");
      assertRefused(batch([event()]), "events[0] is not an object");
      assertRefused(batch("request"), "events[0] is not an object");
      assertRefused(batch(7), "events[0] is not an object");
    });
  });

  describe("refuses an event", () => {
    it("of another schema version", () => {
      for (const schema of [undefined, 0, 2, "1", null]) {
        assertRefused(batch(event({ schema })), "events[0].schema must be 1");
      }
    });

    it("of another run than the token's", () => {
      const why = "events[0].run is not the run the token was issued for (agents/kb-search)";
      assertRefused(batch(event({ run: { ...run, namespace: "other" } })), why);
      assertRefused(batch(event({ run: { ...run, name: "kb-search-2" } })), why);
      assertRefused(batch(event({ run: { ...run, uid: "0a0a0a0a-previous-run" } })), why);
      assertRefused(batch(event({ run: undefined })), why);
      assertRefused(batch(event({ run: "agents/kb-search" })), why);
      assertRefused(batch(event({ run: { namespace: run.namespace, name: run.name } })), why);
    });

    it("of another run, even when the rest of the batch is the token's", () => {
      const other = { namespace: "finance", name: "payroll", uid: "11111111-other" };
      assertRefused(
        batch(event({}, 1), event({ run: other }, 2)),
        "events[1].run is not the run the token was issued for (agents/kb-search)",
      );
    });

    it("whose seq is not a positive integer", () => {
      for (const seq of [0, -1, 1.5, "1", null, 2 ** 53, undefined]) {
        assertRefused(batch(event({ seq })), "events[0].seq must be a positive integer");
      }
      // JSON.parse reads 1e999 as Infinity.
      const infinite = batch(event({ seq: 1 })).replace('"seq":1,', '"seq":1e999,');
      assertRefused(infinite, "events[0].seq must be a positive integer");
    });

    it("whose time is not a time", () => {
      const why = "events[0].time must be a UTC time such as 2026-12-05T12:00:00.000Z";
      for (const bad of [
        undefined,
        1715679012345,
        "",
        "yesterday",
        "not a time",
        null,
        // Date.parse takes these; an audit record does not.
        "1",
        "March 7 2020",
        "2025-05-14 (anything at all)",
        "2026-12-05T12:00:00.000Z (and a comment)",
        // One spelling: times are ordered as text, and +14:00 would sort an old event last.
        "2026-12-06T13:00:00.000+14:00",
        "2026-12-05T12:00:00Z",
        "2026-12-05T12:00:00.5Z",
      ]) {
        assertRefused(batch(event({ time: bad })), why);
      }
    });

    it("whose time is more than an hour ahead, which would also make it the name's latest run", () => {
      assertRefused(
        batch(event({ time: "9999-01-01T00:00:00.000Z" })),
        "events[0].time is more than an hour ahead of the operator's clock",
      );
      const soon = new Date(Date.now() + 30 * 60_000).toISOString();
      assert.equal(accepts(event({ time: soon }))[0]?.time, soon);
    });

    it("that repeats or reorders a sequence number within the batch (first come is stored)", () => {
      const why = "events[1].seq must be greater than events[0].seq";
      assertRefused(batch(event({ reason: "A" }, 2), event({ reason: "B" }, 2)), why);
      assertRefused(batch(event({}, 3), event({}, 2)), why);
      assert.deepEqual(
        accepts(event({}, 2), event({}, 5)).map((e) => e.seq),
        [2, 5],
      );
    });

    it("whose approval is not a HeldCommand's name, a decision and a message", () => {
      const approval = { ...examples.denied.approval };
      for (const [change, why] of [
        [{ command: "" }, /approval\.command must be a HeldCommand's name/],
        [{ command: 7 }, /approval\.command must be a HeldCommand's name/],
        [{ decision: "Pending" }, /approval\.decision must be one of Approved, Denied, Expired/],
        [{ message: "x".repeat(2049) }, /approval\.message must be a string of at most 2048/],
        [{ approver: "bob" }, /approval\.approver is not a field of an approval record/],
      ] as const) {
        assertRefused(batch(event({ approval: { ...approval, ...change } })), why);
      }
      assertRefused(
        batch(event({ approval: "Approved" })),
        /events\[0\]\.approval must be an object/,
      );
    });

    it("whose masked counts are null", () => {
      assertRefused(batch(event({ masked: null })), /events\[0\]\.masked must map/);
    });

    it("of a kind the schema does not have", () => {
      const why = `events[0].kind must be one of ${sessionEventKinds.join(", ")}`;
      // "approval" is the operator's own record of the run's decision: no sidecar may send it.
      for (const kind of [undefined, "query", "Request", "", 1, null, "approval"]) {
        assertRefused(batch(event({ kind })), why);
      }
    });

    for (const field of ["connection", "method", "path", "rule", "reason"]) {
      it(`whose ${field} is not a string of at most 2048 characters`, () => {
        const why = `events[0].${field} must be a string of at most 2048 characters`;
        for (const value of [42, null, true, ["GET"], { value: "x" }, "x".repeat(2049)]) {
          assertRefused(batch(event({ [field]: value })), why);
        }
      });
    }

    for (const field of ["status", "bytesIn", "bytesOut", "durationMs"]) {
      it(`whose ${field} is not a non-negative number`, () => {
        const why = `events[0].${field} must be a non-negative number`;
        for (const value of [-1, "200", null, true, [1], { n: 1 }]) {
          assertRefused(batch(event({ [field]: value })), why);
        }
        // JSON.parse reads 1e999 as Infinity: a number, but not a finite one.
        assertRefused(
          batch(event({ [field]: 0 })).replace(`"${field}":0`, `"${field}":1e999`),
          why,
        );
      });
    }

    it(`whose query is not at most ${maxQueryNames} names of at most ${maxQueryNameLength} characters`, () => {
      const why = `events[0].query must be at most ${maxQueryNames} parameter names of at most ${maxQueryNameLength} characters`;
      const names = (count: number) => Array.from({ length: count }, (_, i) => `p${i}`);
      for (const query of [
        "page=1&export=true",
        { page: "1" },
        null,
        names(maxQueryNames + 1),
        ["page", 1],
        ["page", null],
        ["q".repeat(maxQueryNameLength + 1)],
      ]) {
        assertRefused(batch(event({ query })), why);
      }
    });

    it("whose masked counts are not at most 32 names mapped to counts", () => {
      const why = "events[0].masked must map at most 32 names to counts";
      const counts = (count: number) =>
        Object.fromEntries(Array.from({ length: count }, (_, i) => [`d${i}`, 1]));
      for (const masked of [
        counts(33),
        { email: -1 },
        { email: 1.5 },
        { email: "2" },
        { email: null },
        { email: 2 ** 53 },
        { ["m".repeat(129)]: 1 },
        [1, 2],
        [],
        "email",
        3,
        true,
      ]) {
        assertRefused(batch(event({ masked })), why);
      }
    });

    it("with a field the schema does not have", () => {
      assertRefused(
        batch(event({ value: "hunter2" })),
        "events[0].value is not a field of schema 1",
      );
      assertRefused(batch(event({ body: "{}" })), "events[0].body is not a field of schema 1");
      assertRefused(
        batch(event({ headers: { authorization: "Bearer x" } })),
        "events[0].headers is not a field of schema 1",
      );
      assertRefused(
        '{"events":[{"schema":1,"run":{"namespace":"agents","name":"kb-search","uid":"6f1c2a9e-0d4b-4c1e-9a57-3b8e2f0d7c11"},"seq":1,"time":"2025-05-14T09:30:12.345Z","kind":"request","__proto__":{"polluted":true}}]}',
        "events[0].__proto__ is not a field of schema 1",
      );
    });

    it("naming the first wrong event and field of a batch", () => {
      assertRefused(
        batch(event({}, 1), event({}, 2), event({ status: -5 }, 3), event({ seq: 0 }, 4)),
        "events[2].status must be a non-negative number",
      );
    });
  });

  describe("refuses a SQL record", () => {
    it("that is not an object", () => {
      for (const sql of [null, "SELECT 1", ["SELECT"], 1]) {
        assertRefused(
          batch({ ...examples.statement, seq: 1, sql }),
          "events[0].sql must be an object",
        );
      }
    });

    for (const [field, max] of [
      ["command", 64],
      ["statement", maxSqlStatementLength],
      ["fingerprint", 64],
    ] as const) {
      it(`without its ${field} as a string of at most ${max} characters`, () => {
        const why = `events[0].sql.${field} must be a string of at most ${max} characters`;
        for (const value of [undefined, null, 1, ["SELECT"], "x".repeat(max + 1)]) {
          assertRefused(batch(statement({ [field]: value })), why);
        }
      });
    }

    it("whose error is not a SQLSTATE-sized string", () => {
      const why = "events[0].sql.error must be a string of at most 5 characters";
      for (const error of [42501, null, "permission denied for table docs", "425010"]) {
        assertRefused(batch(statement({ error })), why);
      }
    });

    it("whose action is not one a grant knows", () => {
      const why = "events[0].sql.action must be one of read, write, ddl, admin";
      for (const action of ["delete", "READ", "", null, 1, ["read"]]) {
        assertRefused(batch(statement({ action })), why);
      }
    });

    it(`whose tables are not at most ${maxSqlTables} names of at most 256 characters`, () => {
      const why = `events[0].sql.tables must be at most ${maxSqlTables} names of at most 256 characters`;
      const tables = (count: number) => Array.from({ length: count }, (_, i) => `t${i}`);
      for (const value of [
        "docs",
        null,
        { docs: true },
        tables(maxSqlTables + 1),
        ["docs", 1],
        ["t".repeat(257)],
      ]) {
        assertRefused(batch(statement({ tables: value })), why);
      }
    });

    it("whose rows are not a non-negative integer", () => {
      const why = "events[0].sql.rows must be a non-negative integer";
      for (const rows of [-1, 1.5, "3", null, 2 ** 53]) {
        assertRefused(batch(statement({ rows })), why);
      }
    });

    it("carrying anything but the statement's shape (constants, bind values, the raw query)", () => {
      for (const field of ["params", "values", "bind", "query", "text", "result"]) {
        assertRefused(
          batch(statement({ [field]: ["hunter2"] })),
          `events[0].sql.${field} is not a field of a SQL statement record`,
        );
      }
    });
  });
});
