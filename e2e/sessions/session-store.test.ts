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
import { latestVersion, SchemaTooNew } from "../../operator/src/sessions/migrations.ts";
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

    it("lists the operator's run approval (seq 0) before the sidecar's events", async () => {
      const approval: SessionEvent = {
        schema: 1,
        run: runB,
        seq: 0,
        time: "2026-11-28T11:59:00.000Z",
        kind: "approval",
        approval: { decision: "Approved", message: "approved by bob@example.com (ok)" },
      };
      await store.ingest([approval]);
      const [first, next] = await store.list(runB.uid, { limit: 2 });
      assert.deepEqual(first, approval);
      assert.equal(next?.seq, 1);
      assert.deepEqual(
        (await store.list(runB.uid, { afterSeq: 0, limit: 1 })).map((e) => e.seq),
        [1],
      );
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

// The schemas 0.1.0 created (its table and indexes with IF NOT EXISTS, columns added in place),
// before migrations were recorded: an upgrade must keep what they hold and go on storing.
const schemaOf010 = {
  SQLite: `CREATE TABLE session_events (
      run_uid TEXT NOT NULL, seq INTEGER NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
      time TEXT NOT NULL, kind TEXT NOT NULL, connection TEXT, method TEXT, path TEXT,
      query TEXT, status INTEGER, bytes_in INTEGER, bytes_out INTEGER, duration_ms REAL, rule TEXT,
      reason TEXT, masked TEXT, sql TEXT,
      PRIMARY KEY (run_uid, seq)
    ) WITHOUT ROWID;
    CREATE INDEX session_events_by_name ON session_events (namespace, name, time)`,
  PostgreSQL: `CREATE TABLE lgjit_session_events (
      run_uid text NOT NULL, seq bigint NOT NULL, namespace text NOT NULL, name text NOT NULL,
      time timestamptz NOT NULL, kind text NOT NULL, connection text, method text, path text,
      query jsonb, status integer, bytes_in bigint, bytes_out bigint, duration_ms double precision, rule text,
      reason text, masked jsonb,
      PRIMARY KEY (run_uid, seq)
    );
    CREATE INDEX lgjit_session_events_by_name ON lgjit_session_events (namespace, name, time);
    ALTER TABLE lgjit_session_events ADD COLUMN sql jsonb`,
};
const oldRow = {
  sql: "INSERT INTO session_events (run_uid, seq, namespace, name, time, kind, query) VALUES (?, 1, ?, ?, ?, 'request', '[\"page\"]')",
  postgres:
    "INSERT INTO lgjit_session_events (run_uid, seq, namespace, name, time, kind, query) VALUES ($1, 1, $2, $3, $4, 'request', '[\"page\"]')",
};

interface LegacyStore {
  open(): SessionStore;
  /** The versions recorded in the store's migrations table. */
  recorded(): Promise<number[]>;
}

/** A store whose schema the test sets up as an earlier or a later operator left it. */
const legacyBackends: Array<[keyof typeof schemaOf010, (setUp: string) => Promise<LegacyStore>]> = [
  [
    "SQLite",
    async (setUp) => {
      const file = join(directory, `legacy-${Date.now()}.db`);
      const old = new Database(file);
      old.exec(setUp);
      if (setUp === schemaOf010.SQLite)
        old
          .prepare(oldRow.sql)
          .run(runA.uid, runA.namespace, runA.name, "2026-11-28T12:00:01.000Z");
      old.close();
      return {
        open: () => new SqliteSessionStore(file),
        recorded: async () => {
          const db = new Database(file, { readonly: true });
          const rows = db
            .prepare("SELECT version FROM lgjit_schema_migrations ORDER BY version")
            .all();
          db.close();
          return rows.map((row) => (row as { version: number }).version);
        },
      };
    },
  ],
  [
    "PostgreSQL",
    async (setUp) => {
      const database = `legacy_${Date.now()}`;
      const admin = await postgres.connect(postgres.adminUser, postgres.adminPassword, "postgres");
      await admin.query(`CREATE DATABASE ${database}`);
      await admin.end();
      const connect = () => postgres.connect(postgres.adminUser, postgres.adminPassword, database);
      const old = await connect();
      await old.query(setUp);
      if (setUp === schemaOf010.PostgreSQL)
        await old.query(oldRow.postgres, [
          runA.uid,
          runA.namespace,
          runA.name,
          "2026-11-28T12:00:01.000Z",
        ]);
      await old.end();
      return {
        open: () =>
          new PostgresSessionStore(
            postgres.url(postgres.adminUser, postgres.adminPassword, database),
          ),
        recorded: async () => {
          const client = await connect();
          const { rows } = await client.query(
            "SELECT version FROM lgjit_schema_migrations ORDER BY version",
          );
          await client.end();
          return rows.map((row) => row.version as number);
        },
      };
    },
  ],
];

const sqlEvent = (seq: number): SessionEvent => ({
  schema: 1,
  run: runA,
  seq,
  time: new Date(Date.UTC(2026, 11, 5, 12, 0, seq)).toISOString(),
  kind: "statement",
  connection: "kb-postgres",
  durationMs: 0.5,
  sql: {
    command: "SELECT",
    action: "read",
    statement: "SELECT title FROM docs WHERE id = $1",
    fingerprint: "0a1b2c3d4e5f6a7b",
    tables: ["docs"],
    rows: 1,
  },
  approval: {
    command: "kb-writer-x7k2q",
    decision: "Approved",
    message: "approved by bob@example.com: checked",
  },
});

for (const [backend, setUpStore] of legacyBackends) {
  describe(`upgrading a ${backend} session store`, () => {
    it("adopts 0.1.0's schema, keeps its events and stores new ones with every field", async () => {
      const legacy = await setUpStore(schemaOf010[backend]);
      for (const seq of [2, 3]) {
        // Opened twice: the second time finds every migration recorded and runs none.
        const store = legacy.open();
        try {
          await store.ingest([sqlEvent(seq)]);
          const events = await store.list(runA.uid);
          assert.deepEqual(events[0]?.query, ["page"], "the event 0.1.0 stored was lost");
          assert.deepEqual(events.at(-1), sqlEvent(seq));
        } finally {
          await store.close();
        }
      }
      assert.deepEqual(await legacy.recorded(), [1, 2, 3, 4]);
    });

    it("migrates a new store from nothing and records each version once", async () => {
      const legacy = await setUpStore("SELECT 1");
      const store = legacy.open();
      try {
        await store.ingest([sqlEvent(1)]);
        assert.deepEqual(await store.list(runA.uid), [sqlEvent(1)]);
      } finally {
        await store.close();
      }
      assert.deepEqual(await legacy.recorded(), [1, 2, 3, 4]);
    });

    it("refuses a store a newer operator migrated and changes nothing in it", async () => {
      const legacy = await setUpStore(
        `CREATE TABLE lgjit_schema_migrations (version integer PRIMARY KEY, description text NOT NULL, applied_at text NOT NULL);
         INSERT INTO lgjit_schema_migrations VALUES (${latestVersion + 1}, 'from the future', '2027-01-01')`,
      );
      let store: SessionStore | undefined;
      try {
        const refusal = await (async () => {
          store = legacy.open();
          await store.list(runA.uid);
        })().catch((error: unknown) => error);
        assert.ok(refusal instanceof SchemaTooNew, String(refusal));
        assert.match(refusal.message, /newer than this operator's/);
      } finally {
        await store?.close();
      }
      assert.deepEqual(await legacy.recorded(), [latestVersion + 1]);
    });
  });
}
