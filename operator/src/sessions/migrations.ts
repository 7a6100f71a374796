// The session stores' schema as numbered migrations, each applied once and recorded in the
// store's lgjit_schema_migrations table, so a schema change reaches existing installations.
// A store made before versions were recorded (0.1.0, which created its table and added its
// columns in place) is adopted at the version its columns show.

export interface Migration {
  version: number;
  description: string;
  sqlite: string;
  postgres: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: "session events keyed by run uid and sequence, found by run name",
    sqlite: `
      CREATE TABLE session_events (
        run_uid TEXT NOT NULL, seq INTEGER NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        time TEXT NOT NULL, kind TEXT NOT NULL, connection TEXT, method TEXT, path TEXT,
        status INTEGER, bytes_in INTEGER, bytes_out INTEGER, duration_ms REAL, rule TEXT,
        reason TEXT, masked TEXT,
        PRIMARY KEY (run_uid, seq)
      ) WITHOUT ROWID;
      CREATE INDEX session_events_by_name ON session_events (namespace, name, time)`,
    postgres: `
      CREATE TABLE lgjit_session_events (
        run_uid text NOT NULL, seq bigint NOT NULL, namespace text NOT NULL, name text NOT NULL,
        time timestamptz NOT NULL, kind text NOT NULL, connection text, method text, path text,
        status integer, bytes_in bigint, bytes_out bigint, duration_ms double precision,
        rule text, reason text, masked jsonb,
        PRIMARY KEY (run_uid, seq)
      );
      CREATE INDEX lgjit_session_events_by_name ON lgjit_session_events (namespace, name, time)`,
  },
  {
    version: 2,
    description: "the query's parameter names",
    sqlite: "ALTER TABLE session_events ADD COLUMN query TEXT",
    postgres: "ALTER TABLE lgjit_session_events ADD COLUMN query jsonb",
  },
  {
    version: 3,
    description: "SQL statements",
    sqlite: "ALTER TABLE session_events ADD COLUMN sql TEXT",
    postgres: "ALTER TABLE lgjit_session_events ADD COLUMN sql jsonb",
  },
  {
    version: 4,
    description: "decisions on held commands",
    sqlite: "ALTER TABLE session_events ADD COLUMN approval TEXT",
    postgres: "ALTER TABLE lgjit_session_events ADD COLUMN approval jsonb",
  },
];

export const latestVersion = migrations.length;

export class SchemaTooNew extends Error {
  override name = "SchemaTooNew";
}

export interface MigrationPlan {
  /** Already in a store made before versions were recorded: recorded, not run. */
  adopt: Migration[];
  /** To run, in order, each recorded in the same transaction. */
  apply: Migration[];
}

/**
 * What to do to a store at `recorded` (undefined: no version recorded) whose events table has
 * `columns` (none: no table). A store newer than this operator is refused, never written.
 */
export function migrationPlan(recorded: number | undefined, columns: string[]): MigrationPlan {
  const current = recorded ?? legacyVersion(columns);
  if (current > latestVersion) {
    throw new SchemaTooNew(
      `the session store's schema is version ${current}, newer than this operator's ${latestVersion}: run a newer operator`,
    );
  }
  return {
    adopt: recorded === undefined ? migrations.slice(0, current) : [],
    apply: migrations.slice(current),
  };
}

function legacyVersion(columns: string[]): number {
  if (columns.length === 0) return 0;
  if (columns.includes("sql")) return 3;
  return columns.includes("query") ? 2 : 1;
}

export const migrationsTable = "lgjit_schema_migrations";
