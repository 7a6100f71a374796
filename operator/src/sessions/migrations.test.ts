import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { latestVersion, migrationPlan, migrations, SchemaTooNew } from "./migrations.ts";

const versions = (list: { version: number }[]) => list.map((migration) => migration.version);

describe("migrationPlan", () => {
  it("runs every migration on a new store", () => {
    const plan = migrationPlan(undefined, []);
    assert.deepEqual(versions(plan.adopt), []);
    assert.deepEqual(
      versions(plan.apply),
      migrations.map((migration) => migration.version),
    );
  });

  it("adopts a store made before versions were recorded at the version its columns show", () => {
    const v1 = ["run_uid", "seq", "namespace", "name", "time", "kind", "masked"];
    assert.deepEqual(versions(migrationPlan(undefined, v1).adopt), [1]);
    assert.deepEqual(versions(migrationPlan(undefined, v1).apply), [2, 3, 4]);
    assert.deepEqual(versions(migrationPlan(undefined, [...v1, "query"]).apply), [3, 4]);
    const unversioned = migrationPlan(undefined, [...v1, "query", "sql"]);
    assert.deepEqual(versions(unversioned.adopt), [1, 2, 3]);
    assert.deepEqual(versions(unversioned.apply), [4]);
  });

  it("runs only what a recorded store lacks, whatever its columns", () => {
    assert.deepEqual(versions(migrationPlan(2, ["sql"]).apply), [3, 4]);
    assert.deepEqual(versions(migrationPlan(2, ["sql"]).adopt), []);
    assert.deepEqual(versions(migrationPlan(latestVersion, []).apply), []);
  });

  it("refuses a store a newer operator migrated", () => {
    assert.throws(
      () => migrationPlan(latestVersion + 1, []),
      (error: unknown) =>
        error instanceof SchemaTooNew &&
        error.message.includes(`version ${latestVersion + 1}, newer than this operator's`),
    );
  });

  it("numbers migrations 1, 2, 3... with no gap", () => {
    assert.deepEqual(
      migrations.map((migration) => migration.version),
      Array.from({ length: migrations.length }, (_, i) => i + 1),
    );
  });
});
