// Every row of the classification table in docs/adr/0006-postgres-data-path.md, through the real
// parser: what each statement needs, and the traps (nesting, CTEs, functions, settings) that
// must not make a statement look smaller than it is.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { classifyQuery, loadParser, SqlSyntaxError } from "./statement-classifier.ts";

before(() => loadParser());

/** "read", "write", "ddl", "admin", "plumbing" or "forbidden" for each statement of sql. */
function needs(sql: string): string[] {
  return classifyQuery(sql).statements.map(({ requirement }) =>
    requirement.kind === "action" ? requirement.action : requirement.kind,
  );
}

const table: Array<[string, string, string]> = [
  // [row of the ADR, statement, what it needs]
  ["read: SELECT", "SELECT id, title FROM docs WHERE id = 1", "read"],
  ["read: VALUES", "VALUES (1), (2)", "read"],
  ["read: SHOW", "SHOW search_path", "read"],
  ["read: EXPLAIN without ANALYZE of a write", "EXPLAIN DELETE FROM docs", "read"],
  ["read: EXPLAIN (ANALYZE false)", "EXPLAIN (ANALYZE false) UPDATE docs SET title = 'x'", "read"],
  ["read: COPY TO STDOUT", "COPY docs TO STDOUT", "read"],
  [
    "read: COPY (query) TO STDOUT",
    "COPY (SELECT title FROM docs) TO STDOUT WITH (FORMAT csv)",
    "read",
  ],
  ["read: read-only built-in functions", "SELECT count(*), lower(title), now() FROM docs", "read"],
  ["read: pg_catalog-qualified built-in", "SELECT pg_catalog.upper(title) FROM docs", "read"],
  ["read: DECLARE CURSOR over a SELECT", "DECLARE c CURSOR FOR SELECT * FROM docs", "read"],
  ["write: INSERT", "INSERT INTO docs (title) VALUES ('a')", "write"],
  ["write: UPDATE", "UPDATE docs SET title = 'b' WHERE id = 1", "write"],
  ["write: DELETE", "DELETE FROM docs WHERE id = 1", "write"],
  [
    "write: MERGE",
    "MERGE INTO docs d USING new_docs n ON d.id = n.id WHEN MATCHED THEN DELETE",
    "write",
  ],
  [
    "write: INSERT ... ON CONFLICT",
    "INSERT INTO docs (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET title = 'c'",
    "write",
  ],
  ["write: SELECT FOR UPDATE", "SELECT * FROM docs FOR UPDATE", "write"],
  ["write: SELECT FOR SHARE", "SELECT * FROM docs FOR SHARE", "write"],
  [
    "write: data-modifying CTE",
    "WITH gone AS (DELETE FROM docs RETURNING *) SELECT count(*) FROM gone",
    "write",
  ],
  [
    "write: write in a subquery's CTE",
    "SELECT * FROM (WITH x AS (UPDATE docs SET title = '' RETURNING id) SELECT id FROM x) s",
    "write",
  ],
  ["write: EXPLAIN ANALYZE of a write", "EXPLAIN ANALYZE DELETE FROM docs", "write"],
  ["write: COPY FROM STDIN", "COPY docs (title) FROM STDIN", "write"],
  ["write: nextval", "SELECT nextval('docs_id_seq')", "write"],
  ["write: pg_notify", "SELECT pg_notify('docs', 'changed')", "write"],
  ["write: LOCK TABLE", "LOCK TABLE docs IN ACCESS EXCLUSIVE MODE", "write"],
  ["write: NOTIFY", "NOTIFY docs_changed", "write"],
  [
    "write: DECLARE CURSOR FOR UPDATE",
    "DECLARE c CURSOR FOR SELECT * FROM docs FOR UPDATE",
    "write",
  ],
  ["ddl: CREATE TABLE", "CREATE TABLE notes (id int)", "ddl"],
  [
    "ddl: ALTER TABLE ... DROP NOT NULL",
    "ALTER TABLE docs ALTER COLUMN title DROP NOT NULL",
    "ddl",
  ],
  ["ddl: DROP TABLE", "DROP TABLE docs", "ddl"],
  ["ddl: TRUNCATE", "TRUNCATE docs", "ddl"],
  ["ddl: COMMENT", "COMMENT ON TABLE docs IS 'x'", "ddl"],
  ["ddl: CREATE INDEX", "CREATE INDEX ON docs (title)", "ddl"],
  ["ddl: CREATE VIEW", "CREATE VIEW v AS SELECT * FROM docs", "ddl"],
  ["ddl: CREATE FUNCTION", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "ddl"],
  ["ddl: CREATE TABLE AS", "CREATE TABLE copy AS SELECT * FROM docs", "ddl"],
  ["ddl: SELECT INTO creates a table", "SELECT * INTO copy FROM docs", "ddl"],
  ["ddl: VACUUM", "VACUUM docs", "ddl"],
  ["ddl: REFRESH MATERIALIZED VIEW", "REFRESH MATERIALIZED VIEW mv", "ddl"],
  ["admin: GRANT", "GRANT SELECT ON docs TO PUBLIC", "admin"],
  ["admin: REVOKE", "REVOKE SELECT ON docs FROM PUBLIC", "admin"],
  ["admin: GRANT role", "GRANT kb_owner TO current_user", "admin"],
  ["admin: CREATE ROLE", "CREATE ROLE intruder LOGIN", "admin"],
  ["admin: ALTER ROLE", "ALTER ROLE current_user SET search_path = evil", "admin"],
  ["admin: CREATE DATABASE", "CREATE DATABASE other", "admin"],
  ["admin: ALTER SYSTEM", "ALTER SYSTEM SET log_statement = 'none'", "admin"],
  ["admin: CREATE EXTENSION", "CREATE EXTENSION dblink", "admin"],
  ["admin: DO block", "DO $$ BEGIN DELETE FROM docs; END $$", "admin"],
  ["admin: CALL", "CALL cleanup()", "admin"],
  ["admin: unknown function", "SELECT archive_everything()", "admin"],
  ["admin: function in another schema", "SELECT public.lower(title) FROM docs", "admin"],
  ["admin: function that is not read-only", "SELECT pg_terminate_backend(1)", "admin"],
  ["admin: unknown function in WHERE", "SELECT * FROM docs WHERE purge(id)", "admin"],
  [
    "admin: function as a FROM item",
    "SELECT * FROM dblink('host=evil', 'SELECT 1') AS t(x int)",
    "admin",
  ],
  [
    "admin: search_path putting pg_catalog after another schema",
    "SET search_path = public, pg_catalog",
    "admin",
  ],
  [
    "admin: set_config of such a search_path",
    "SELECT set_config('search_path', 'public, pg_catalog', false)",
    "admin",
  ],
  ["admin: CHECKPOINT", "CHECKPOINT", "admin"],
  ["admin: LOAD", "LOAD 'plugin'", "admin"],
  ["plumbing: BEGIN", "BEGIN", "plumbing"],
  ["plumbing: COMMIT", "COMMIT", "plumbing"],
  ["plumbing: SAVEPOINT", "SAVEPOINT s1", "plumbing"],
  ["plumbing: SET an ordinary setting", "SET statement_timeout = '5s'", "plumbing"],
  ["plumbing: SET LOCAL", "SET LOCAL lock_timeout = 1000", "plumbing"],
  ["plumbing: RESET", "RESET ALL", "plumbing"],
  ["plumbing: RESET ROLE", "RESET ROLE", "plumbing"],
  ["plumbing: search_path without pg_catalog", "SET search_path = public", "plumbing"],
  [
    "plumbing: set_config of an ordinary setting",
    "SELECT set_config('statement_timeout', '5s', false)",
    "read",
  ],
  ["plumbing: SET client_encoding UTF8", "SET client_encoding = 'UTF8'", "plumbing"],
  ["plumbing: PREPARE of a SELECT", "PREPARE p AS SELECT 1", "read"],
  ["plumbing: EXECUTE", "EXECUTE p", "plumbing"],
  ["plumbing: DEALLOCATE", "DEALLOCATE ALL", "plumbing"],
  ["plumbing: LISTEN", "LISTEN docs_changed", "plumbing"],
  ["plumbing: UNLISTEN", "UNLISTEN *", "plumbing"],
  ["plumbing: DISCARD", "DISCARD ALL", "plumbing"],
  ["plumbing: FETCH", "FETCH 10 FROM c", "plumbing"],
  ["plumbing: CLOSE", "CLOSE c", "plumbing"],
  ["forbidden: SET ROLE", "SET ROLE kb_owner", "forbidden"],
  ["forbidden: SET LOCAL ROLE", "SET LOCAL ROLE kb_owner", "forbidden"],
  ["forbidden: SET SESSION AUTHORIZATION", "SET SESSION AUTHORIZATION postgres", "forbidden"],
  ["forbidden: set_config('role')", "SELECT set_config('role', 'kb_owner', false)", "forbidden"],
  [
    "forbidden: set_config of a computed name",
    "SELECT set_config(lower('ROLE'), 'kb_owner', false)",
    "forbidden",
  ],
  [
    "forbidden: set_config('role') in WHERE",
    "SELECT 1 WHERE set_config('role', 'x', true) IS NOT NULL",
    "forbidden",
  ],
  ["forbidden: COPY to a file", "COPY docs TO '/tmp/docs'", "forbidden"],
  ["forbidden: COPY from a program", "COPY docs FROM PROGRAM 'curl evil'", "forbidden"],
  [
    "forbidden: EXPLAIN of a forbidden statement",
    "EXPLAIN SELECT set_config('role', 'x', false)",
    "forbidden",
  ],
  ["forbidden: another client encoding", "SET client_encoding = 'SJIS'", "forbidden"],
  ["forbidden: SET NAMES of another encoding", "SET NAMES 'BIG5'", "forbidden"],
  ["forbidden: backslash-escaped strings", "SET standard_conforming_strings = off", "forbidden"],
  [
    "forbidden: set_config of another encoding",
    "SELECT set_config('client_encoding', 'GBK', false)",
    "forbidden",
  ],
];

describe("the classification table", () => {
  for (const [row, sql, expected] of table) {
    it(`${row}: ${sql}`, () => assert.deepEqual(needs(sql), [expected]));
  }
});

describe("statements as the server would see them", () => {
  it("classifies each statement of a multi-statement string in order", () => {
    assert.deepEqual(needs("BEGIN; SELECT 1; UPDATE docs SET title = ''; COMMIT"), [
      "plumbing",
      "read",
      "write",
      "plumbing",
    ]);
  });

  it("keeps ALTER ... DROP NOT NULL a ddl statement, not a DROP", () => {
    const [statement] = classifyQuery(
      "ALTER TABLE checkpoints ALTER COLUMN x DROP NOT NULL",
    ).statements;
    assert.equal(statement?.command, "ALTER TABLE");
  });

  it("walks expressions nested thousands deep without overflowing the stack", () => {
    const depth = 3000;
    const sql = `SELECT ${"abs(".repeat(depth)}1${")".repeat(depth)}`;
    assert.deepEqual(needs(sql), ["read"]);
    const hidden = `SELECT ${"abs(".repeat(depth)}purge(1)${")".repeat(depth)}`;
    assert.deepEqual(needs(hidden), ["admin"]);
  });

  it("names the relations a statement touches, without CTE names", () => {
    const [statement] = classifyQuery(
      "WITH recent AS (SELECT * FROM kb.docs) INSERT INTO audit SELECT * FROM recent JOIN people p ON true",
    ).statements;
    assert.deepEqual(statement?.tables.sort(), ["audit", "kb.docs", "people"]);
  });

  it("replaces every constant in the recorded statement", () => {
    const { normalized, fingerprint } = classifyQuery(
      "SELECT * FROM people WHERE email = 'ada@example.com' AND card = 4111111111111111",
    );
    assert.doesNotMatch(normalized, /ada|4111/);
    assert.equal(
      fingerprint,
      classifyQuery("select * from people where email = 'x' and card = 1").fingerprint,
    );
  });

  it("refuses what does not parse with a syntax error", () => {
    assert.throws(() => classifyQuery("SELEC 1"), SqlSyntaxError);
  });

  it("knows PREPARE's and EXECUTE's names, and the columns a COPY names", () => {
    const [prepare] = classifyQuery("PREPARE wipe AS DELETE FROM docs").statements;
    assert.equal(prepare?.prepares, "wipe");
    assert.deepEqual(needs("PREPARE wipe AS DELETE FROM docs"), ["write"]);
    assert.equal(classifyQuery("EXECUTE wipe").statements[0]?.executes, "wipe");
    assert.deepEqual(
      classifyQuery("COPY people (name, ssn) TO STDOUT").statements[0]?.copyColumns,
      ["name", "ssn"],
    );
    assert.deepEqual(
      classifyQuery("COPY (SELECT name, ssn AS x FROM people) TO STDOUT").statements[0]
        ?.copyColumns,
      ["name", "x"],
    );
    assert.equal(
      classifyQuery("COPY (SELECT * FROM people) TO STDOUT").statements[0]?.copyColumns,
      undefined,
    );
  });
});
