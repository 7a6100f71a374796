// A masked column must not leave under another name: every way SQL can rename or wrap a column
// makes the whole result masked, while the plain forms keep masking to the named column.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { parseSync } from "libpg-query";
import { hidesMaskedColumns } from "./column-references.ts";
import { loadParser } from "./statement-classifier.ts";

before(() => loadParser());
const masked = new Set(["ssn", "email"]);

function hides(sql: string): boolean {
  const tree = parseSync(sql) as { stmts: { stmt: Record<string, unknown> }[] };
  return hidesMaskedColumns(tree.stmts[0]?.stmt ?? {}, masked);
}

describe("statements that keep a masked column's name", () => {
  for (const sql of [
    "SELECT name, ssn FROM people",
    "SELECT p.ssn, p.name FROM people p",
    "SELECT * FROM people",
    "SELECT p.* FROM people p",
    "SELECT ssn AS ssn FROM people",
    "SELECT name FROM people WHERE ssn LIKE '1%' ORDER BY email",
    "SELECT count(*) FROM people GROUP BY name HAVING count(*) > 1",
    "UPDATE people SET name = 'x' RETURNING id, ssn",
    "SELECT * FROM (SELECT * FROM people) s",
  ]) {
    it(sql, () => assert.equal(hides(sql), false));
  }
});

describe("statements that could carry a masked column under another name", () => {
  for (const sql of [
    "SELECT ssn AS id_number FROM people",
    "SELECT lower(email) FROM people",
    "SELECT email || '' AS contact FROM people",
    "SELECT (SELECT ssn FROM people LIMIT 1) AS x",
    "SELECT x FROM (SELECT ssn AS x FROM people) s",
    "WITH s AS (SELECT ssn AS x FROM people) SELECT x FROM s",
    "SELECT * FROM people AS p(a, b, c, d)",
    "WITH s(a, b) AS (SELECT name, ssn FROM people) SELECT * FROM s",
    "SELECT row_to_json(p) FROM people p",
    "SELECT p FROM people p",
    "SELECT to_jsonb(p.*) FROM people p",
    "SELECT name FROM people UNION SELECT ssn FROM people",
    "SELECT CASE WHEN true THEN ssn END AS a FROM people",
    "INSERT INTO audit SELECT ssn FROM people RETURNING *",
  ]) {
    it(sql, () => assert.equal(hides(sql), true));
  }
});

it("hides nothing when no column is masked", () => {
  const tree = parseSync("SELECT ssn AS x FROM people") as {
    stmts: { stmt: Record<string, unknown> }[];
  };
  assert.equal(hidesMaskedColumns(tree.stmts[0]?.stmt ?? {}, new Set()), false);
});
