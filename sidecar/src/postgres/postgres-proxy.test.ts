// The Postgres data path with real clients against a real PostgreSQL 15 over TLS and SCRAM:
// psql (simple protocol), node-postgres (extended protocol) and postgres.js (pipelining) through
// the sidecar's listener, each checked for what reaches the server, what comes back, and what
// the session records.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import postgres from "postgres";
import { type PostgresFixture, people, startPostgresFixture } from "../testing/postgres-fixture.ts";
import {
  bindMessage,
  encodeFrontend,
  executeMessage,
  MessageReader,
  parseMessage,
  queryMessage,
  startupPacket,
} from "./protocol.ts";

const run = promisify(execFile);
let fixture: PostgresFixture;

before(async () => {
  fixture = await startPostgresFixture({
    actions: ["read"],
    masking: { columns: ["ssn"], detectors: ["email", "credit-card"], unmaskable: "Deny" },
  });
});
after(() => fixture?.stop());

async function psql(
  sql: string,
  ...args: string[]
): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(
      "psql",
      [fixture.url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=0", "-c", sql, ...args],
      { env: { ...process.env, PGPASSWORD: "anything", PGCONNECT_TIMEOUT: "5" } },
    );
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const failed = error as { stdout: string; stderr: string; code: number };
    return { stdout: failed.stdout, stderr: failed.stderr, code: failed.code };
  }
}

async function client(): Promise<pg.Client> {
  const graph = new pg.Client({ connectionString: fixture.url, password: "anything" });
  graph.on("error", () => undefined);
  await graph.connect();
  return graph;
}

describe("psql through the sidecar", () => {
  it("reads with masked columns and detectors, and records the statement without constants", async () => {
    const before = fixture.records.length;
    const { stdout, code } = await psql(
      "SELECT name, email, ssn, card FROM people WHERE name <> 'nobody' ORDER BY id",
    );
    assert.equal(code, 0);
    assert.equal(
      stdout.trim(),
      "Ada|[MASKED:email]|[MASKED:column]|\nGrace|[MASKED:email]|[MASKED:column]|",
    );
    const event = fixture.records.slice(before).find((record) => record.sql?.command === "SELECT");
    assert.ok(event, "the SELECT was recorded");
    assert.equal(event.kind, "masked");
    assert.equal(event.sql?.action, "read");
    assert.equal(event.sql?.rows, 2);
    assert.deepEqual(event.sql?.tables, ["people"]);
    assert.match(event.sql?.statement ?? "", /name <> \$1/);
    assert.doesNotMatch(JSON.stringify(event), /nobody|example\.com|6789/);
    assert.deepEqual(event.masked, { email: 2, column: 2, "credit-card": 2, nulled: 2 });
  });

  it("refuses a write with 42501 before any of the string reaches the server, and the session goes on", async () => {
    const { stdout, stderr } = await psql(
      "SELECT 1; UPDATE people SET name = 'x'; SELECT 2",
      "-c",
      "SELECT count(*) FROM people WHERE name = 'x'",
    );
    assert.match(stderr, /ERROR: {2}connection "kb-postgres": UPDATE needs the write action/);
    assert.doesNotMatch(stderr, /PL\/pgSQL|CONTEXT/);
    assert.equal(stdout.trim(), "0");
    const denied = fixture.records.findLast((record) => record.kind === "denied");
    assert.equal(denied?.reason, "ActionNotGranted");
    assert.equal(denied?.sql?.command, "UPDATE");
  });

  it("leaves an open transaction aborted after a refusal, as a server error would", async () => {
    const { stdout, stderr } = await psql(
      "BEGIN",
      "-c",
      "DELETE FROM people",
      "-c",
      "SELECT 1",
      "-c",
      "COMMIT",
    );
    assert.match(stderr, /DELETE needs the write action/);
    assert.match(stderr, /current transaction is aborted/);
    assert.match(stdout, /ROLLBACK/);
  });

  it("never allows SET ROLE, set_config('role'), or COPY to a server file", async () => {
    for (const sql of [
      "SET ROLE kb_owner",
      "SELECT set_config('role', 'kb_owner', false)",
      "COPY people TO '/tmp/people'",
    ]) {
      const { stderr } = await psql(sql);
      assert.match(stderr, /is never allowed through the sidecar/, sql);
    }
  });

  it("masks COPY ... TO STDOUT rows", async () => {
    const { stdout, code } = await psql(
      "COPY (SELECT name, ssn, email FROM people ORDER BY id) TO STDOUT",
    );
    assert.equal(code, 0);
    assert.equal(
      stdout.trim(),
      "Ada\t[MASKED:column]\t[MASKED:email]\nGrace\t[MASKED:column]\t[MASKED:email]",
    );
  });

  it("forwards nothing while session events cannot be recorded, and goes on once they can", async () => {
    fixture.accepting = false;
    try {
      const { stderr } = await psql("SELECT 1");
      assert.match(
        stderr,
        /cannot record session events \(its disk is full\), so it forwards nothing/,
      );
    } finally {
      fixture.accepting = true;
    }
    assert.equal((await psql("SELECT 1")).stdout.trim(), "1");
  });

  it("refuses a COPY in a format it cannot mask, naming why", async () => {
    for (const options of ["(FORMAT csv)", "(FORMAT binary)", "(DELIMITER '|')"]) {
      const { stderr } = await psql(`COPY people TO STDOUT WITH ${options}`);
      assert.match(
        stderr,
        /COPY in csv or binary format or with its own delimiter cannot be masked/,
        options,
      );
    }
    assert.equal(
      fixture.records.findLast((record) => record.kind === "denied")?.reason,
      "Unmaskable",
    );
  });

  it("masks every column of a statement that renames a masked one", async () => {
    const { stdout } = await psql("SELECT ssn AS id_number, name FROM people ORDER BY id LIMIT 1");
    assert.equal(stdout.trim(), "[MASKED:column]|[MASKED:column]");
  });
});

describe("node-postgres (extended protocol) through the sidecar", () => {
  it("binds parameters, masks text and binary results, and keeps the session after a refusal", async () => {
    const graph = await client();
    try {
      const found = await graph.query("SELECT name, ssn, email FROM people WHERE name = $1", [
        "Ada",
      ]);
      assert.deepEqual(found.rows, [
        { name: "Ada", ssn: "[MASKED:column]", email: "[MASKED:email]" },
      ]);
      await assert.rejects(
        graph.query("INSERT INTO people (name) VALUES ($1)", ["Mallory"]),
        (error: pg.DatabaseError) =>
          error.code === "42501" && /INSERT needs the write action/.test(error.message),
      );
      const again = await graph.query("SELECT count(*)::int AS n FROM people");
      assert.equal(again.rows[0].n, people.length);
      // node-postgres asks for binary results with a flag its types do not declare.
      const binaryQuery = { text: "SELECT card, ssn FROM people ORDER BY id", binary: true };
      const binary = await graph.query(binaryQuery as pg.QueryConfig);
      assert.equal(binary.rows[0].card, null);
      assert.equal(binary.rows[0].ssn, "[MASKED:column]");
    } finally {
      await graph.end();
    }
    const events = fixture.records.filter((record) => record.sql?.statement.includes("$1"));
    assert.ok(events.every((record) => !JSON.stringify(record).includes("Mallory")));
  });

  it("leaves a transaction aborted after a refusal in the extended protocol, until ROLLBACK", async () => {
    const graph = await client();
    try {
      await graph.query("BEGIN");
      await assert.rejects(
        graph.query("UPDATE people SET name = $1", ["x"]),
        /needs the write action/,
      );
      await assert.rejects(
        graph.query("SELECT $1::int AS one", [1]),
        (error: pg.DatabaseError) => error.code === "25P02",
      );
      await graph.query("ROLLBACK");
      assert.equal((await graph.query("SELECT $1::int AS one", [1])).rows[0].one, 1);
    } finally {
      await graph.end();
    }
  });

  it("skips the rest of a refused pipeline to Sync and answers with one ReadyForQuery", async () => {
    const sql = postgres(fixture.url, { password: "anything", max: 1, onnotice: () => undefined });
    try {
      const results = await Promise.allSettled([
        sql`SELECT 1 AS a`,
        sql`DELETE FROM people WHERE id = ${1}`,
        sql`SELECT 2 AS b`,
      ]);
      assert.equal(results[0].status, "fulfilled");
      assert.equal(results[1].status, "rejected");
      assert.match(
        String((results[1] as PromiseRejectedResult).reason),
        /DELETE needs the write action/,
      );
      const [count] = await sql`SELECT count(*)::int AS n FROM people`;
      assert.equal(count?.n, people.length);
    } finally {
      await sql.end();
    }
  });

  it("follows a server error in a pipeline the client sends in pieces, to its Sync", {
    timeout: 10_000,
  }, async () => {
    const socket: Socket = connect(fixture.port, "127.0.0.1");
    const reader = new MessageReader(1 << 20);
    let seen = "";
    const waiters: Array<() => void> = [];
    socket.on("data", (chunk) => {
      for (const message of reader.push(chunk)) seen += message.type;
      for (const wake of waiters.splice(0)) wake();
    });
    const until = async (pattern: RegExp) => {
      while (!pattern.test(seen)) await new Promise<void>((resolve) => waiters.push(resolve));
    };
    socket.write(
      startupPacket([
        ["user", "graph"],
        ["database", "kb"],
      ]),
    );
    await until(/Z$/);
    seen = "";
    // The error reaches the sidecar before the rest of the pipeline leaves the client.
    socket.write(
      Buffer.concat([
        parseMessage("", "SELECT 1/0"),
        bindMessage("", ""),
        executeMessage(""),
        encodeFrontend({ type: "H" }),
      ]),
    );
    await until(/E/);
    socket.write(
      Buffer.concat([
        encodeFrontend({ type: "D", target: "P", name: "" }),
        executeMessage(""),
        encodeFrontend({ type: "S" }),
        queryMessage("SELECT 1"),
      ]),
    );
    await until(/Z.*Z$/);
    assert.match(seen, /^(1?2?D?)E.*Z.*TDCZ$/);
    socket.destroy();
  });

  it("cancels a running query through the sidecar's own key", async () => {
    const sql = postgres(fixture.url, { password: "anything", max: 1 });
    try {
      const sleeping = sql`SELECT pg_sleep(30)`;
      const started = Date.now();
      setTimeout(() => sleeping.cancel(), 300);
      await assert.rejects(sleeping, /canceling statement due to user request/);
      assert.ok(Date.now() - started < 10_000);
    } finally {
      await sql.end();
    }
  });

  it("ends every session with a FATAL error naming the revocation", async () => {
    const graph = await client();
    const ended = new Promise<Error>((resolve) => graph.on("error", resolve));
    fixture.revoke();
    const error = await ended;
    assert.match(error.message, /credential was revoked/);
    await fixture.grant({
      actions: ["read"],
      masking: { columns: ["ssn"], detectors: ["email", "credit-card"], unmaskable: "Deny" },
    });
  });
});
