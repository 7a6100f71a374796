// The session store in one SQLite file (better-sqlite3), for a single operator replica: the
// chart puts it on a volume. WAL mode keeps reads from blocking ingest.
import Database from "better-sqlite3";
import type { SessionEvent } from "../../../api/session-events.ts";
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
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS session_events (
        run_uid TEXT NOT NULL, seq INTEGER NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        time TEXT NOT NULL, kind TEXT NOT NULL, connection TEXT, method TEXT, path TEXT,
        query TEXT, status INTEGER, bytes_in INTEGER, bytes_out INTEGER, duration_ms REAL, rule TEXT,
        reason TEXT, masked TEXT, sql TEXT,
        PRIMARY KEY (run_uid, seq)
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS session_events_by_name ON session_events (namespace, name, time)`);
    // A store made before events carried query names or SQL statements gains their columns.
    const columns = this.#db.pragma("table_info(session_events)") as { name: string }[];
    for (const added of ["query", "sql"]) {
      if (!columns.some((column) => column.name === added))
        this.#db.exec(`ALTER TABLE session_events ADD COLUMN ${added} TEXT`);
    }
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
      .all(runUid, options.afterSeq ?? 0, options.limit ?? 10_000) as EventRow[];
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
