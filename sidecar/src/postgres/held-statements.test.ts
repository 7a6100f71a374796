// Statements whose action the grant holds for approval, through the sidecar to a real
// PostgreSQL: nothing of a held statement reaches the server until it is approved, and then
// exactly it, once; denied, expired, canceled or abandoned, nothing does, and the session goes
// on. The operator's side is tested with its own routes, the whole path on the test node.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import pg from "pg";
import type { GrantClaim } from "../../../api/credentials.ts";
import { type Held, testHolds } from "../testing/held-commands.ts";
import { type PostgresFixture, startPostgresFixture } from "../testing/postgres-fixture.ts";
import { waitFor } from "../testing/test-helpers.ts";
import {
  bindMessage,
  cancelRequest,
  encodeFrontend,
  executeMessage,
  MessageReader,
  parseNoticeFields,
  queryMessage,
  startupPacket,
} from "./protocol.ts";

const grant: Partial<GrantClaim> = {
  actions: ["read", "write"],
  approval: {
    actions: ["write"],
    approvers: [{ kind: "Group", name: "security" }],
    approvals: 1,
    timeout: "10m",
  },
};

describe("statements held for approval", () => {
  const { held, holds } = testHolds("kb-writer");
  let fixture: PostgresFixture;
  let admin: pg.Client;
  let graph: pg.Client;

  const titles = async () =>
    (await admin.query<{ title: string }>("SELECT title FROM public.notes ORDER BY id")).rows.map(
      (row) => row.title,
    );
  const nextHeld = async (count: number) => {
    await waitFor("a statement to be held", () => held.length === count);
    return held[count - 1] as Held;
  };

  before(async () => {
    fixture = await startPostgresFixture(grant, {
      holds,
    });
    admin = await fixture.server.connect(
      fixture.server.adminUser,
      fixture.server.adminPassword,
      "kb",
    );
    await admin.query("CREATE TABLE public.notes (id serial PRIMARY KEY, title text)");
    await admin.query("GRANT SELECT ON public.notes TO kb_read");
    await admin.query("GRANT INSERT, UPDATE ON public.notes TO kb_write");
    await admin.query("GRANT USAGE ON SEQUENCE public.notes_id_seq TO kb_write");
  });
  after(async () => {
    await admin?.end();
    await fixture?.stop();
  });
  beforeEach(async () => {
    held.length = 0;
    fixture.records.length = 0;
    await admin.query("TRUNCATE public.notes");
    graph = new pg.Client({ connectionString: fixture.url, password: "anything" });
    graph.on("error", () => undefined);
    await graph.connect();
  });

  it("runs an approved INSERT once, exactly as held, and holds the next identical one again", async () => {
    const sql = "INSERT INTO public.notes (title) VALUES ('rotate keys')";
    const first = graph.query(sql);
    const hold = await nextHeld(1);
    assert.deepEqual(hold.request, {
      connection: "kb-postgres",
      action: "write",
      sql: { statement: sql },
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(await titles(), [], "nothing reaches the server while it is held");
    hold.decide("Approved", "approved by bob@example.com (ok)");
    assert.equal((await first).rowCount, 1);
    assert.deepEqual(await titles(), ["rotate keys"]);
    const event = fixture.records.at(-1);
    assert.equal(event?.kind, "statement");
    assert.equal(event?.sql?.statement, "INSERT INTO public.notes (title) VALUES ($1)");
    assert.deepEqual(event?.approval, {
      command: "kb-writer-1",
      decision: "Approved",
      message: "approved by bob@example.com (ok)",
    });

    const second = graph.query(sql);
    (await nextHeld(2)).decide("Denied", "denied by bob@example.com: one is enough");
    await assert.rejects(second, (error: pg.DatabaseError) => {
      assert.equal(error.code, "42501");
      assert.match(error.message, /INSERT was held for approval as kb-writer-2: denied by bob/);
      return true;
    });
    assert.deepEqual(await titles(), ["rotate keys"], "approving one approved no later one");
    assert.equal((await graph.query("SELECT 1 AS one")).rows[0].one, 1, "the session goes on");
    await graph.end();
  });

  it("refuses a denied or expired statement with 42501 and records the decision", async () => {
    for (const [phase, reason] of [
      ["Denied", "ApprovalDenied"],
      ["Expired", "ApprovalExpired"],
    ] as const) {
      held.length = 0;
      const update = graph.query("UPDATE public.notes SET title = 'x'");
      (await nextHeld(1)).decide(phase, "no decision in time");
      await assert.rejects(update, { code: "42501" });
      const event = fixture.records.at(-1);
      assert.equal(event?.kind, "denied");
      assert.equal(event?.reason, reason);
      assert.equal(event?.approval?.decision, phase);
      assert.equal(event?.sql?.command, "UPDATE");
    }
    await graph.end();
  });

  it("holds each execution of a parameterized statement with a digest of its parameters", async () => {
    const text = "INSERT INTO public.notes (title) VALUES ($1)";
    const statement = { name: "add-note", text };
    const first = graph.query({ ...statement, values: ["first"] });
    const hold = await nextHeld(1);
    assert.equal(hold.request.sql?.statement, text);
    assert.match(hold.request.body?.sha256 ?? "", /^[0-9a-f]{64}$/);
    hold.decide("Approved", "approved by bob@example.com (ok)");
    await first;
    const second = graph.query({ ...statement, values: ["second"] });
    const again = await nextHeld(2);
    assert.notEqual(
      again.request.body?.sha256,
      hold.request.body?.sha256,
      "other parameters, another digest",
    );
    again.decide("Denied", "denied by bob@example.com");
    await assert.rejects(second, { code: "42501" });
    assert.deepEqual(await titles(), ["first"]);
    assert.equal(
      (await graph.query({ text: "SELECT count(*)::int AS n FROM public.notes" })).rows[0].n,
      1,
    );
    await graph.end();
  });

  it("never holds a read, and keeps what the graph sent after a held statement in order", async () => {
    assert.equal((await graph.query("SELECT count(*)::int AS n FROM public.notes")).rows[0].n, 0);
    assert.deepEqual(held, []);
    // Sent together: the read waits behind the held write, then runs after it.
    const write = graph.query("INSERT INTO public.notes (title) VALUES ('a')");
    const read = graph.query("SELECT count(*)::int AS n FROM public.notes");
    (await nextHeld(1)).decide("Approved", "approved by bob@example.com (ok)");
    await write;
    assert.equal((await read).rows[0].n, 1, "the read after the write saw it");
    await graph.end();
  });

  it("holds a transaction's string as one command, all of it shown to approvers", async () => {
    const sql =
      "BEGIN; INSERT INTO public.notes (title) VALUES ('one'); INSERT INTO public.notes (title) VALUES ('two'); COMMIT";
    const done = graph.query(sql);
    const hold = await nextHeld(1);
    assert.equal(hold.request.sql?.statement, sql);
    hold.decide("Approved", "approved by bob@example.com (ok)");
    await done;
    assert.deepEqual(await titles(), ["one", "two"]);
    assert.equal(held.length, 1);
    await graph.end();
  });

  it("ends the wait when the graph cancels the statement (57014) or leaves", async () => {
    const waiting = graph.query("INSERT INTO public.notes (title) VALUES ('c')");
    const hold = await nextHeld(1);
    const client = graph as unknown as { processID: number; secretKey: number };
    const key = Buffer.alloc(4);
    key.writeInt32BE(client.secretKey);
    const socket = connect(fixture.port, "127.0.0.1");
    socket.end(cancelRequest(client.processID, key));
    await assert.rejects(waiting, { code: "57014" });
    assert.ok(hold.signal.aborted);
    assert.equal(fixture.records.at(-1)?.reason, "Canceled");
    assert.equal((await graph.query("SELECT 1 AS one")).rows[0].one, 1);

    void graph.query("INSERT INTO public.notes (title) VALUES ('d')").catch(() => undefined);
    const abandoned = await nextHeld(2);
    await graph.end();
    await waitFor("the wait to end", () => abandoned.signal.aborted);
    assert.deepEqual(await titles(), []);
  });

  it("sends nothing when the credential is revoked during the wait, whatever the decision", async () => {
    const waiting = graph.query("INSERT INTO public.notes (title) VALUES ('late')");
    const hold = await nextHeld(1);
    fixture.revoke();
    await assert.rejects(waiting, /credential was revoked/);
    assert.ok(hold.signal.aborted);
    hold.decide("Approved", "approved by bob@example.com (ok)");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(await titles(), []);
    await fixture.grant(grant);
  });

  it("refuses a held statement run through PREPARE and EXECUTE, which approvers would not see", async () => {
    await graph.query("PREPARE add_note(text) AS INSERT INTO public.notes (title) VALUES ($1)");
    await assert.rejects(graph.query("EXECUTE add_note('x')"), (error: pg.DatabaseError) => {
      assert.equal(error.code, "42501");
      assert.match(error.message, /prepared statement whose action the grant holds for approval/);
      return true;
    });
    assert.equal(fixture.records.at(-1)?.reason, "ApprovalRequired");
    assert.deepEqual(held, []);
    assert.deepEqual(await titles(), []);
    await graph.end();
  });

  it("refuses a Bind of a held statement that a SQL PREPARE made, before it can execute", async () => {
    await graph.end();
    const errors = await rawSession([
      queryMessage("PREPARE add_note AS INSERT INTO public.notes (title) VALUES ('x')"),
      bindMessage("", "add_note"),
      executeMessage("", 0),
      encodeFrontend({ type: "S" }),
      encodeFrontend({ type: "X" }),
    ]);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]?.get("C"), "42501");
    assert.match(errors[0]?.get("M") ?? "", /prepared statement whose action the grant holds/);
    assert.deepEqual(held, []);
    assert.deepEqual(await titles(), []);
  });

  it("refuses to hold a statement longer than approvers are shown", async () => {
    const long = `INSERT INTO public.notes (title) VALUES ('${"a".repeat(64 * 1024)}')`;
    await assert.rejects(graph.query(long), (error: pg.DatabaseError) => {
      assert.equal(error.code, "42501");
      assert.match(error.message, /at most 65536 characters, so approvers can read it/);
      return true;
    });
    assert.equal(fixture.records.at(-1)?.reason, "HeldStatementTooLong");
    assert.deepEqual(held, []);
    assert.deepEqual(await titles(), []);
    await graph.end();
  });

  /** Logs in over the raw protocol, sends the messages, and returns the errors until the close. */
  function rawSession(messages: Buffer[]): Promise<Map<string, string>[]> {
    return new Promise((resolve, reject) => {
      const socket = connect(fixture.port, "127.0.0.1");
      const reader = new MessageReader(1 << 20);
      const errors: Map<string, string>[] = [];
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
          if (message.type === "E") errors.push(parseNoticeFields(message.body));
          if (message.type === "Z" && !loggedIn) {
            loggedIn = true;
            socket.write(Buffer.concat(messages));
          }
        }
      });
      socket.on("error", reject);
      socket.on("close", () => resolve(errors));
    });
  }
});
