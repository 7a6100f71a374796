// The session store in one SQLite file (better-sqlite3), for a single operator replica: the
// chart puts it on a volume. WAL mode keeps reads from blocking ingest.
import Database from "better-sqlite3";
import type { SessionEvent } from "../../../api/session-events.ts";
import { migrationPlan, migrationsTable } from "./migrations.ts";
import {
  type EventRow,
  eventColumns,
  eventOf,
  type ListOptions,
  rowOf,
  type SessionStore,
  type SessionSummary,
} from "./session-store.ts";

export class SqliteSessionStore implements SessionStore {
  readonly #db: Database.Database;
  readonly #insert: Database.Statement;
  readonly #ingest: (rows: EventRow[]) => void;

  constructor(file: string) {
    this.#db = new Database(file);
    this.#db.pragma("journal_mode = WAL");
    this.#db.pragma("synchronous = NORMAL");
    migrate(this.#db);
    this.#insert = this.#db.prepare(
      `INSERT OR IGNORE INTO session_events (${eventColumns.join(", ")})
       VALUES (${eventColumns.map((column) => `@${column}`).join(", ")})`,
    );
    this.#ingest = this.#db.transaction((rows: EventRow[]) => {
      for (const row of rows) this.#insert.run(row);
    });
  }

  async ingest(events: SessionEvent[]): Promise<void> {
    this.#ingest(events.map(rowOf));
  }

  async list(runUid: string, options: ListOptions = {}): Promise<SessionEvent[]> {
    const rows = this.#db
      .prepare(
        `SELECT ${eventColumns.join(", ")} FROM session_events
         WHERE run_uid = ? AND seq > ? ORDER BY seq LIMIT ?`,
      )
      .all(runUid, options.afterSeq ?? -1, options.limit ?? 10_000) as EventRow[];
    return rows.map(eventOf);
  }

  async summary(runUid: string): Promise<SessionSummary> {
    const row = this.#db
      .prepare(
        `SELECT count(*) AS events, coalesce(sum(kind = 'denied'), 0) AS denied,
                coalesce(sum(masked IS NOT NULL), 0) AS masked
         FROM session_events WHERE run_uid = ?`,
      )
      .get(runUid) as SessionSummary;
    return { events: row.events, denied: row.denied, masked: row.masked };
  }

  async latestRun(namespace: string, name: string): Promise<string | undefined> {
    const row = this.#db
      .prepare(
        `SELECT run_uid FROM session_events WHERE namespace = ? AND name = ?
         ORDER BY time DESC LIMIT 1`,
      )
      .get(namespace, name) as { run_uid: string } | undefined;
    return row?.run_uid;
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}

/** Brings the file's schema to the latest version in one transaction (BEGIN IMMEDIATE). */
function migrate(db: Database.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS ${migrationsTable} (
    version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const record = db.prepare(
    `INSERT INTO ${migrationsTable} (version, description, applied_at) VALUES (?, ?, ?)`,
  );
  db.transaction(() => {
    const { version } = db
      .prepare(`SELECT max(version) AS version FROM ${migrationsTable}`)
      .get() as {
      version: number | null;
    };
    const columns = (db.pragma("table_info(session_events)") as { name: string }[]).map(
      (column) => column.name,
    );
    const plan = migrationPlan(version ?? undefined, columns);
    const now = new Date().toISOString();
    for (const migration of plan.adopt)
      record.run(migration.version, `${migration.description} (adopted)`, now);
    for (const migration of plan.apply) {
      db.exec(migration.sqlite);
      record.run(migration.version, migration.description, now);
    }
  }).immediate();
}
