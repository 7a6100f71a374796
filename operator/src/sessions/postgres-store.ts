// The session store in PostgreSQL, shared by every operator replica: each batch is one
// INSERT ... ON CONFLICT DO NOTHING, so replicas ingesting the same resend store it once.
import pg from "pg";
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

// Replicas starting together migrate one at a time (a transaction-scoped advisory lock).
const migrationLock = 0x6c676a6974; // "lgjit"

export class PostgresSessionStore implements SessionStore {
  readonly #pool: pg.Pool;
  #ready: Promise<unknown> | undefined;

  /** connectionString: a libpq URL; the schema is migrated on first use. */
  constructor(connectionString: string) {
    this.#pool = new pg.Pool({ connectionString, max: 4 });
    // An idle connection the server ended (a restart, a failover) must not crash the process:
    // the pool drops it and connects anew on the next query.
    this.#pool.on("error", () => undefined);
  }

  async ingest(events: SessionEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.#schema();
    const rows = events.map(rowOf);
    const values: unknown[] = [];
    const tuples = rows.map((row, r) => {
      for (const column of eventColumns) values.push(row[column]);
      const base = r * eventColumns.length;
      return `(${eventColumns.map((_, c) => `$${base + c + 1}`).join(", ")})`;
    });
    await this.#pool.query(
      `INSERT INTO lgjit_session_events (${eventColumns.join(", ")}) VALUES ${tuples.join(", ")}
       ON CONFLICT (run_uid, seq) DO NOTHING`,
      values,
    );
  }

  async list(runUid: string, options: ListOptions = {}): Promise<SessionEvent[]> {
    await this.#schema();
    const columns = eventColumns
      .map((column) =>
        column === "time"
          ? `to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS time`
          : ["masked", "query", "sql", "approval"].includes(column)
            ? `${column}::text AS ${column}`
            : column,
      )
      .join(", ");
    const result = await this.#pool.query<EventRow>(
      `SELECT ${columns} FROM lgjit_session_events WHERE run_uid = $1 AND seq > $2
       ORDER BY seq LIMIT $3`,
      [runUid, options.afterSeq ?? -1, options.limit ?? 10_000],
    );
    return result.rows.map(eventOf);
  }

  async summary(runUid: string): Promise<SessionSummary> {
    await this.#schema();
    const result = await this.#pool.query<{ events: string; denied: string; masked: string }>(
      `SELECT count(*) AS events, count(*) FILTER (WHERE kind = 'denied') AS denied,
              count(*) FILTER (WHERE masked IS NOT NULL) AS masked
       FROM lgjit_session_events WHERE run_uid = $1`,
      [runUid],
    );
    const row = result.rows[0];
    return {
      events: Number(row?.events ?? 0),
      denied: Number(row?.denied ?? 0),
      masked: Number(row?.masked ?? 0),
    };
  }

  async latestRun(namespace: string, name: string): Promise<string | undefined> {
    await this.#schema();
    const result = await this.#pool.query<{ run_uid: string }>(
      `SELECT run_uid FROM lgjit_session_events WHERE namespace = $1 AND name = $2
       ORDER BY time DESC LIMIT 1`,
      [namespace, name],
    );
    return result.rows[0]?.run_uid;
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }

  #schema(): Promise<unknown> {
    this.#ready ??= this.#migrate().catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  async #migrate(): Promise<void> {
    const client = await this.#pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock($1)", [migrationLock]);
      await client.query(`CREATE TABLE IF NOT EXISTS ${migrationsTable} (
        version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL)`);
      const recorded = await client.query<{ version: number | null }>(
        `SELECT max(version) AS version FROM ${migrationsTable}`,
      );
      const columns = await client.query<{ column_name: string }>(
        `SELECT column_name FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = 'lgjit_session_events'`,
      );
      const plan = migrationPlan(
        recorded.rows[0]?.version ?? undefined,
        columns.rows.map((row) => row.column_name),
      );
      const record = (version: number, description: string) =>
        client.query(
          `INSERT INTO ${migrationsTable} (version, description, applied_at) VALUES ($1, $2, now())`,
          [version, description],
        );
      for (const migration of plan.adopt)
        await record(migration.version, `${migration.description} (adopted)`);
      for (const migration of plan.apply) {
        await client.query(migration.postgres);
        await record(migration.version, migration.description);
      }
      await client.query("COMMIT");
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }
}
