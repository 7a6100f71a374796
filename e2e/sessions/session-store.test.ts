// The same suite against both session store backends: SQLite in a file and a real PostgreSQL.
// Events are stored once per (run uid, seq) however often they arrive, read back exactly as
// sent, in order, and summarized per run.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import type { SessionEvent } from "../../api/session-events.ts";
import { PostgresSessionStore } from "../../operator/src/sessions/postgres-store.ts";
import type { SessionStore } from "../../operator/src/sessions/session-store.ts";
import { SqliteSessionStore } from "../../operator/src/sessions/sqlite-store.ts";
import { type PostgresServer, startPostgres } from "../lib/postgres.ts";

const runA = {
  namespace: "agents",
  name: "kb-search",
  uid: "11111111-1111-4111-8111-111111111111",
};
const runB = {
  namespace: "agents",
  name: "kb-search",
  uid: "22222222-2222-4222-8222-222222222222",
};

function event(run: typeof runA, seq: number, extra: Partial<SessionEvent> = {}): SessionEvent {
  return {
    schema: 1,
    run,
    seq,
    time: new Date(Date.UTC(2026, 10, 28, 12, 0, seq)).toISOString(),
    kind: "request",
    connection: "kb-api",
    method: "GET",
    path: `/v1/docs/${seq}`,
    status: 200,
    bytesIn: 0,
    bytesOut: 120 + seq,
    durationMs: 1.25,
    rule: "GET /v1/docs/**",
    ...extra,
  };
}

const backends: Array<[string, () => Promise<{ store: SessionStore; dispose(): Promise<void> }>]> =
  [];
let postgres: PostgresServer;
let directory: string;
before(async () => {
  postgres = await startPostgres();
  directory = mkdtempSync(join(tmpdir(), "lgjit-sessions-"));
});
after(async () => {
  await postgres?.stop();
  rmSync(directory, { recursive: true, force: true });
});
backends.push(
  [
    "SQLite",
    async () => {
      const store = new SqliteSessionStore(join(directory, `${Date.now()}.db`));
      return { store, dispose: () => store.close() };
    },
  ],
  [
    "PostgreSQL",
    async () => {
      const store = new PostgresSessionStore(postgres.url());
      return { store, dispose: () => store.close() };
    },
  ],
);

for (const [backend, open] of backends) {
  describe(`the ${backend} session store`, () => {
    let store: SessionStore;
    let dispose: () => Promise<void>;
    before(async () => {
      ({ store, dispose } = await open());
    });
    after(() => dispose());

    it("stores each event once, however often it arrives, and reads it back as sent", async () => {
      const batch = [1, 2, 3].map((seq) => event(runA, seq));
      await store.ingest(batch);
      await store.ingest(batch);
      await store.ingest([event(runA, 3, { status: 500 }), event(runA, 4)]);
      const events = await store.list(runA.uid);
      assert.deepEqual(
        events.map((e) => e.seq),
        [1, 2, 3, 4],
      );
      assert.deepEqual(events[0], batch[0]);
      assert.equal(events[2]?.status, 200, "a resend must not overwrite the stored event");
    });

    it("keeps runs apart and pages through a run in order", async () => {
      await store.ingest([event(runB, 2), event(runB, 1)]);
      assert.deepEqual(
        (await store.list(runB.uid)).map((e) => e.seq),
        [1, 2],
      );
      assert.deepEqual(
        (await store.list(runA.uid, { afterSeq: 2, limit: 1 })).map((e) => e.seq),
        [3],
      );
    });

    it("keeps absent fields absent, query parameter names and masking counts intact", async () => {
      const denied: SessionEvent = {
        schema: 1,
        run: runB,
        seq: 3,
        time: "2026-11-28T12:00:03.000Z",
        kind: "denied",
        connection: "kb-api",
        method: "DELETE",
        path: "/v1/docs/1",
        query: ["force", "cascade"],
        status: 403,
        reason: "ActionNotGranted",
      };
      const masked = event(runB, 4, { kind: "masked", masked: { email: 2, "credit-card": 1 } });
      await store.ingest([denied, masked]);
      const [readDenied, readMasked] = await store.list(runB.uid, { afterSeq: 2 });
      assert.deepEqual(readDenied, denied);
      assert.deepEqual(readMasked, masked);
      assert.deepEqual(await store.summary(runB.uid), { events: 4, denied: 1, masked: 1 });
      assert.deepEqual(await store.summary("no-such-run"), { events: 0, denied: 0, masked: 0 });
    });

    it("finds the latest run of a name, after its object is gone", async () => {
      // runA and runB share a name, as a rerun after a delete would.
      const rerun = { ...runB, uid: "33333333-3333-4333-8333-333333333333" };
      await store.ingest([event(rerun, 1, { time: "2026-11-29T08:00:00.000Z" })]);
      assert.equal(await store.latestRun(runB.namespace, runB.name), rerun.uid);
      assert.equal(await store.latestRun(runB.namespace, "never-ran"), undefined);
    });
  });
}

describe("a SQLite store made before events carried query parameter names", () => {
  it("gains their column and keeps what it held", async () => {
    const file = join(directory, "before-query.db");
    const old = new Database(file);
    old.exec(`CREATE TABLE session_events (
      run_uid TEXT NOT NULL, seq INTEGER NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
      time TEXT NOT NULL, kind TEXT NOT NULL, connection TEXT, method TEXT, path TEXT,
      status INTEGER, bytes_in INTEGER, bytes_out INTEGER, duration_ms REAL, rule TEXT,
      reason TEXT, masked TEXT, PRIMARY KEY (run_uid, seq)) WITHOUT ROWID`);
    old
      .prepare(
        "INSERT INTO session_events (run_uid, seq, namespace, name, time, kind) VALUES (?, 1, ?, ?, ?, 'request')",
      )
      .run(runA.uid, runA.namespace, runA.name, "2026-11-28T12:00:01.000Z");
    old.close();
    const store = new SqliteSessionStore(file);
    try {
      await store.ingest([event(runA, 2, { query: ["export"] })]);
      const events = await store.list(runA.uid);
      assert.deepEqual(
        events.map((e) => [e.seq, e.query]),
        [
          [1, undefined],
          [2, ["export"]],
        ],
      );
    } finally {
      await store.close();
    }
  });
});
