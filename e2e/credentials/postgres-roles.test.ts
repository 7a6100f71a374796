// Dynamic run roles against a real PostgreSQL 15, managed with a CREATEROLE (not superuser)
// admin as a Connection's Secret would hold it.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import pg from "pg";
import {
  closeAdminSessions,
  dropRunRole,
  dynamicRoleName,
  ensureRunRole,
  generateRolePassword,
  listRunRoles,
  type PostgresAdmin,
  PostgresCredentialError,
  type RunRef,
  runRoleComment,
} from "../../operator/src/credentials/postgres-roles.ts";
import { binDir, usePostgres } from "../lib/postgres.ts";

const connection = "kb-postgres";
const hourMs = 60 * 60 * 1000;

describe("dynamic PostgreSQL run roles", () => {
  const suite = usePostgres();
  after(closeAdminSessions);

  const admin = (): PostgresAdmin => ({
    host: suite.server.host,
    port: suite.server.port,
    database: suite.server.kb.database,
    sslMode: "disable",
    username: suite.server.kb.adminUser,
    password: suite.server.kb.adminPassword,
  });

  const newRun = (name = "kb-refresh"): RunRef => ({
    namespace: "agents",
    name,
    uid: randomUUID(),
  });

  /** Issues a role for a fresh run with the given action roles; returns its name and password. */
  async function issue(
    memberOf: string[],
    options: { run?: RunRef; validUntil?: Date } = {},
  ): Promise<{ run: RunRef; name: string; password: string }> {
    const run = options.run ?? newRun();
    const name = dynamicRoleName(run, connection);
    const password = generateRolePassword();
    await ensureRunRole(admin(), {
      name,
      password,
      validUntil: options.validUntil ?? new Date(Date.now() + hourMs),
      memberOf,
      comment: runRoleComment(run, connection),
    });
    return { run, name, password };
  }

  /** A session as the given role; idle-session errors (termination) surface on the next query. */
  async function login(name: string, password: string, database = "kb"): Promise<pg.Client> {
    const client = new pg.Client({
      host: suite.server.host,
      port: suite.server.port,
      user: name,
      password,
      database,
    });
    client.on("error", () => undefined);
    await client.connect();
    return client;
  }

  async function asSuperuser<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = await suite.server.connect(undefined, undefined, "kb");
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }

  async function roleExists(name: string): Promise<boolean> {
    return asSuperuser(async (client) => {
      const result = await client.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [name]);
      return result.rowCount === 1;
    });
  }

  async function expectSqlState(call: Promise<unknown>, code: string): Promise<void> {
    await assert.rejects(call, (error: unknown) => {
      assert.equal((error as { code?: string }).code, code, String(error));
      return true;
    });
  }

  const { read, write, ddl } = { read: "kb_read", write: "kb_write", ddl: "kb_owner" };

  it("logs in with its password as itself", async () => {
    const { name, password } = await issue([read]);
    const session = await login(name, password);
    try {
      const { rows } = await session.query("SELECT current_user AS user");
      assert.equal(rows[0].user, name);
    } finally {
      await session.end();
    }
    await dropRunRole(admin(), name);
  });

  it("with read membership can SELECT but not INSERT (42501)", async () => {
    const { name, password } = await issue([read]);
    const session = await login(name, password);
    try {
      const { rows } = await session.query("SELECT title FROM docs ORDER BY id LIMIT 1");
      assert.equal(rows[0].title, "welcome");
      await expectSqlState(session.query("INSERT INTO docs (title) VALUES ('nope')"), "42501");
      await expectSqlState(session.query("DELETE FROM docs"), "42501");
    } finally {
      await session.end();
    }
    await dropRunRole(admin(), name);
  });

  it("with write membership can INSERT, and without ddl cannot change the schema", async () => {
    const { name, password } = await issue([read, write]);
    const session = await login(name, password);
    try {
      const inserted = await session.query(
        "INSERT INTO docs (title) VALUES ('from a run') RETURNING id",
      );
      assert.equal(inserted.rowCount, 1);
      await expectSqlState(session.query("ALTER TABLE docs ADD COLUMN x int"), "42501");
      await expectSqlState(session.query("CREATE TABLE run_table (id int)"), "42501");
      await expectSqlState(session.query("DROP TABLE docs"), "42501");
    } finally {
      await session.end();
    }
    await dropRunRole(admin(), name);
  });

  it("with ddl membership can change the schema; what it creates survives the drop", async () => {
    const { name, password } = await issue([ddl]);
    const session = await login(name, password);
    try {
      await session.query("ALTER TABLE docs ADD COLUMN IF NOT EXISTS tags text[]");
      await session.query("CREATE TABLE run_made (id int)");
    } finally {
      await session.end();
    }
    await dropRunRole(admin(), name);
    assert.equal(await roleExists(name), false);
    const owner = await asSuperuser(async (client) => {
      const { rows } = await client.query(
        "SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname = 'run_made'",
      );
      return rows[0]?.owner;
    });
    assert.equal(owner, suite.server.kb.adminUser, "REASSIGN OWNED gives it to the admin");
  });

  it("owns nothing and has no powers of its own", async () => {
    const { name } = await issue([read, write, ddl]);
    const { owned, role } = await asSuperuser(async (client) => {
      const oid = (await client.query("SELECT oid FROM pg_roles WHERE rolname = $1", [name]))
        .rows[0].oid;
      const owned = await client.query(
        "SELECT classid::regclass, objid FROM pg_shdepend WHERE refobjid = $1 AND deptype = 'o'",
        [oid],
      );
      const role = await client.query(
        `SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit,
                rolcanlogin FROM pg_roles WHERE oid = $1`,
        [oid],
      );
      return { owned: owned.rows, role: role.rows[0] };
    });
    assert.deepEqual(owned, []);
    assert.deepEqual(role, {
      rolsuper: false,
      rolcreatedb: false,
      rolcreaterole: false,
      rolreplication: false,
      rolbypassrls: false,
      rolinherit: true,
      rolcanlogin: true,
    });
    await dropRunRole(admin(), name);
  });

  it("refuses to log in after VALID UNTIL", async () => {
    const { name, password } = await issue([read], { validUntil: new Date(Date.now() - 1000) });
    await expectSqlState(login(name, password), "28P01");
    await dropRunRole(admin(), name);
  });

  it("after dropRunRole open sessions end and logins fail within 5 seconds", async (t) => {
    const { name, password } = await issue([read, write]);
    const idle = await login(name, password);
    const inTransaction = await login(name, password);
    await inTransaction.query("BEGIN");
    await inTransaction.query("SELECT count(*) FROM docs");
    const busy = await login(name, password);
    const sleeping = busy.query("SELECT pg_sleep(60)");
    sleeping.catch(() => undefined);
    // Another database: termination is cluster-wide, not per database.
    const elsewhere = await login(name, password, "postgres");
    try {
      const started = performance.now();
      const result = await dropRunRole(admin(), name);
      await assert.rejects(sleeping, /terminat/);
      for (const session of [idle, inTransaction, elsewhere])
        await assert.rejects(session.query("SELECT 1"));
      await assert.rejects(login(name, password));
      const elapsedMs = performance.now() - started;
      t.diagnostic(`revoked in ${elapsedMs.toFixed(0)} ms`);
      assert.ok(elapsedMs < 5000, `took ${elapsedMs.toFixed(0)} ms`);
      assert.deepEqual(result, { dropped: true, terminatedSessions: 4 });
      assert.equal(await roleExists(name), false);
    } finally {
      for (const session of [idle, inTransaction, busy, elsewhere])
        await session.end().catch(() => undefined);
    }
  });

  it("is idempotent: dropping a role that is gone succeeds", async () => {
    const { name } = await issue([read]);
    assert.deepEqual(await dropRunRole(admin(), name), { dropped: true, terminatedSessions: 0 });
    assert.deepEqual(await dropRunRole(admin(), name), { dropped: false, terminatedSessions: 0 });
  });

  it("never alters or drops a role the operator did not mint", async () => {
    await assert.rejects(dropRunRole(admin(), "kb_owner"), (error: unknown) => {
      assert.ok(error instanceof PostgresCredentialError);
      assert.equal(error.reason, "RoleNotManaged");
      return true;
    });
    assert.equal(await roleExists("kb_owner"), true);
    // Shaped like a run role, but created by a person: no run named in its comment.
    await asSuperuser((client) => client.query("CREATE ROLE lgjit_someone_else LOGIN"));
    await assert.rejects(
      dropRunRole(admin(), "lgjit_someone_else"),
      (error: unknown) =>
        error instanceof PostgresCredentialError && error.reason === "RoleNotManaged",
    );
    assert.equal(await roleExists("lgjit_someone_else"), true);
    await asSuperuser((client) => client.query("DROP ROLE lgjit_someone_else"));

    // A role of the right shape that belongs to another run keeps its password.
    const { run, name, password } = await issue([read]);
    const impostor = { ...run, uid: randomUUID() };
    await assert.rejects(
      ensureRunRole(admin(), {
        name,
        password: generateRolePassword(),
        validUntil: new Date(Date.now() + hourMs),
        memberOf: [read, write],
        comment: runRoleComment(impostor, connection),
      }),
      (error: unknown) =>
        error instanceof PostgresCredentialError && /not minted/.test(error.message),
    );
    await (await login(name, password)).end();
    await dropRunRole(admin(), name);
  });

  it("re-issuance to the same run changes the password and the memberships", async () => {
    const { run, name, password } = await issue([read]);
    const newPassword = generateRolePassword();
    const again = await ensureRunRole(admin(), {
      name,
      password: newPassword,
      validUntil: new Date(Date.now() + 2 * hourMs),
      memberOf: [read, write],
      comment: runRoleComment(run, connection),
    });
    assert.deepEqual(again, { created: false });
    await expectSqlState(login(name, password), "28P01");
    const session = await login(name, newPassword);
    try {
      await session.query("INSERT INTO docs (title) VALUES ('after re-issuance')");
    } finally {
      await session.end();
    }
    await ensureRunRole(admin(), {
      name,
      password: newPassword,
      validUntil: new Date(Date.now() + 2 * hourMs),
      memberOf: [read],
      comment: runRoleComment(run, connection),
    });
    const narrowed = await login(name, newPassword);
    try {
      await expectSqlState(narrowed.query("INSERT INTO docs (title) VALUES ('x')"), "42501");
    } finally {
      await narrowed.end();
    }
    await dropRunRole(admin(), name);
  });

  it("listRunRoles finds the role with its run until it is dropped", async () => {
    const { run, name } = await issue([read]);
    const listed = (await listRunRoles(admin())).find((role) => role.name === name);
    assert.ok(listed, `${name} is listed`);
    assert.deepEqual(listed.comment, runRoleComment(run, connection));
    assert.equal(listed.canLogin, true);
    assert.ok(listed.validUntil && listed.validUntil.getTime() > Date.now());
    await dropRunRole(admin(), name);
    assert.equal(
      (await listRunRoles(admin())).some((role) => role.name === name),
      false,
    );
  });

  it("a missing action role is named with the connection and nothing is created", async () => {
    const run = newRun();
    const name = dynamicRoleName(run, connection);
    await assert.rejects(issue([read, "kb_missing"], { run }), (error: unknown) => {
      assert.ok(error instanceof PostgresCredentialError, String(error));
      assert.equal(error.reason, "ActionRoleMissing");
      assert.match(error.message, /"kb_missing"/);
      assert.match(error.message, /connection "kb-postgres"/);
      assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${suite.server.port}`));
      return true;
    });
    assert.equal(await roleExists(name), false);

    // On re-issuance the role stays as it was: the old password still works.
    const { password } = await issue([read], { run });
    await assert.rejects(
      ensureRunRole(admin(), {
        name,
        password: generateRolePassword(),
        validUntil: new Date(Date.now() + hourMs),
        memberOf: ["kb_missing"],
        comment: runRoleComment(run, connection),
      }),
      PostgresCredentialError,
    );
    await (await login(name, password)).end();
    await dropRunRole(admin(), name);
  });

  it("names long runs uniquely and PostgreSQL keeps them untruncated", async () => {
    const long = "nightly-knowledge-base-refresh-".repeat(8);
    const first = await issue([read], { run: newRun(`${long}a`) });
    const second = await issue([read], { run: newRun(`${long}b`) });
    assert.notEqual(first.name, second.name);
    for (const { name, password } of [first, second]) {
      assert.ok(Buffer.byteLength(name) < 63, name);
      const session = await login(name, password);
      try {
        assert.equal((await session.query("SELECT current_user AS user")).rows[0].user, name);
      } finally {
        await session.end();
      }
      await dropRunRole(admin(), name);
    }
  });

  it("replaces a pooled admin session the server ended unnoticed", async () => {
    await listRunRoles(admin());
    // psql runs while this process's event loop is blocked, so the pool cannot see the
    // session end before handing it out again.
    const psql = spawnSync(
      join(binDir, "psql"),
      [
        "-X",
        "-At",
        suite.server.url(),
        "-c",
        `SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE usename = '${suite.server.kb.adminUser}'`,
      ],
      { encoding: "utf8" },
    );
    assert.equal(psql.status, 0, psql.stderr);
    assert.ok(Number(psql.stdout) > 0, "the pool held an idle admin session");
    assert.ok(Array.isArray(await listRunRoles(admin())));
  });

  it("reports a wrong admin password without revealing it", async () => {
    const wrong = "not-the-password-7f3a";
    await assert.rejects(listRunRoles({ ...admin(), password: wrong }), (error: unknown) => {
      assert.ok(error instanceof PostgresCredentialError);
      assert.equal(error.reason, "AuthenticationFailed");
      assert.match(error.message, /kb_admin/);
      assert.ok(!error.message.includes(wrong));
      return true;
    });
  });
});
