// Dynamic PostgreSQL roles: one login role per run per connection, holding its privileges
// only through membership in the Connection's action roles, dropped when the run ends.
//
// The admin credential needs CREATEROLE (PostgreSQL 15: any non-superuser role may then be
// granted; 16 and later: the admin also needs ADMIN OPTION on each action role).
import { createHash, createHmac, pbkdf2, randomBytes } from "node:crypto";
import { promisify } from "node:util";
import pg from "pg";
import type { PostgresCredential } from "../../../api/credentials.ts";
import { errorMessage } from "../../../api/errors.ts";
import { postgresTlsOptions } from "../../../api/postgres-tls.ts";

/** Every role the operator mints starts with this; no other role is ever altered or dropped. */
export const runRolePrefix = "lgjit_";
/** PostgreSQL silently truncates identifiers past NAMEDATALEN - 1 bytes. */
const maxIdentifierBytes = 63;
const namePieceLength = 24;
const uidPieceLength = 8;
const hashLength = 10;
const runRoleNamePattern = /^lgjit_[a-z0-9_]+$/;
const managedBy = "langgraph-jit";
const scramIterations = 4096;
/** How long dropRunRole waits for terminated sessions to go before reporting them. */
const terminateTimeoutMs = 10_000;

export interface RunRef {
  namespace: string;
  name: string;
  uid: string;
}

/** How the operator reaches a Connection's server with its admin credential: a login, as a
 * sidecar gets one, without the wire type's tags. */
export type PostgresAdmin = Omit<PostgresCredential, "type" | "dynamic">;

/** Stored as the role's COMMENT so a sweeper can tell which run it belongs to. */
export interface RunRoleComment {
  managedBy: typeof managedBy;
  run: RunRef;
  connection: string;
}

export interface RunRoleSpec {
  name: string;
  password: string;
  /** The run's deadline: PostgreSQL refuses logins after it even if the drop never comes. */
  validUntil: Date;
  /** The action roles of the granted actions. */
  memberOf: string[];
  comment: RunRoleComment;
}

export interface RunRole {
  name: string;
  validUntil: Date | null;
  canLogin: boolean;
  /** Absent when the comment is missing or not one the operator wrote. */
  comment?: RunRoleComment;
}

export type PostgresCredentialFailure =
  | "Unreachable"
  | "AuthenticationFailed"
  | "ActionRoleMissing"
  | "RoleNotManaged"
  | "SessionsRemain"
  | "Failed";

/** A role operation failed; the message names the server, database and role, never a password. */
export class PostgresCredentialError extends Error {
  override name = "PostgresCredentialError";
  readonly reason: PostgresCredentialFailure;
  /** SQLSTATE of the server's error, when there was one. */
  readonly code: string | undefined;

  constructor(
    reason: PostgresCredentialFailure,
    message: string,
    options: { code?: string; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.reason = reason;
    this.code = options.code;
  }
}

function sanitize(text: string, length: number): string {
  const cleaned = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "_")
    .replace(/^_+/, "")
    .slice(0, length)
    .replace(/_+$/, "");
  return cleaned;
}

/**
 * The role for one run on one connection: lgjit_<run name>_<uid prefix>_<hash>, where the
 * hash of namespace, name, uid and connection keeps names distinct once the pieces are cut.
 */
export function dynamicRoleName(run: RunRef, connection: string): string {
  const hash = createHash("sha256")
    .update(JSON.stringify([run.namespace, run.name, run.uid, connection]))
    .digest("hex")
    .slice(0, hashLength);
  const name = sanitize(run.name, namePieceLength) || "run";
  const uid = sanitize(run.uid.replaceAll("-", ""), uidPieceLength) || "nouid";
  return `${runRolePrefix}${name}_${uid}_${hash}`;
}

/** True for a name the operator could have minted (and so may alter or drop). */
export function isRunRoleName(name: string): boolean {
  return runRoleNamePattern.test(name) && Buffer.byteLength(name) <= maxIdentifierBytes;
}

/** 32 random bytes, base64url: 43 characters a connection string carries unescaped. */
export function generateRolePassword(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802/7677), computed here
 * so the plaintext never reaches the server, its logs or pg_stat_statements.
 */
export async function scramVerifier(password: string, salt = randomBytes(16)): Promise<string> {
  // SASLprep leaves printable ASCII unchanged; anything else would need the full algorithm.
  if (!/^[\x20-\x7e]+$/.test(password))
    throw new Error("a role password must be non-empty printable ASCII");
  const salted = await promisify(pbkdf2)(password, salt, scramIterations, 32, "sha256");
  const hmac = (key: Buffer, text: string) => createHmac("sha256", key).update(text).digest();
  const storedKey = createHash("sha256").update(hmac(salted, "Client Key")).digest();
  const serverKey = hmac(salted, "Server Key");
  return `SCRAM-SHA-256$${scramIterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

export function runRoleComment(run: RunRef, connection: string): RunRoleComment {
  return {
    managedBy,
    run: { namespace: run.namespace, name: run.name, uid: run.uid },
    connection,
  };
}

/** The comment of a role the operator minted, or undefined for anything else. */
export function parseRunRoleComment(text: string | null | undefined): RunRoleComment | undefined {
  if (!text) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { managedBy: by, run, connection } = value as Record<string, unknown>;
  if (by !== managedBy || typeof connection !== "string") return undefined;
  if (typeof run !== "object" || run === null) return undefined;
  const { namespace, name, uid } = run as Record<string, unknown>;
  if (typeof namespace !== "string" || typeof name !== "string" || typeof uid !== "string")
    return undefined;
  return runRoleComment({ namespace, name, uid }, connection);
}

/** pg's client settings for the admin connection; sslMode means what it means in libpq. */
export function postgresClientConfig(admin: PostgresAdmin): pg.ClientConfig {
  const ssl = postgresTlsOptions(admin.sslMode, admin.host, admin.caPem) ?? false;
  return {
    host: admin.host,
    port: admin.port,
    database: admin.database,
    user: admin.username,
    password: admin.password,
    ssl,
    application_name: "langgraph-jit-operator",
    connectionTimeoutMillis: 10_000,
    statement_timeout: 20_000,
    lock_timeout: 10_000,
    query_timeout: 30_000,
  };
}

function target(admin: PostgresAdmin): string {
  return `PostgreSQL at ${admin.host}:${admin.port} database "${admin.database}"`;
}

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

function connectError(admin: PostgresAdmin, error: unknown): PostgresCredentialError {
  const code = sqlState(error);
  // 28P01 wrong password, 28000 no pg_hba.conf entry or role cannot log in.
  const reason = code?.startsWith("28") ? "AuthenticationFailed" : "Unreachable";
  const fix =
    reason === "AuthenticationFailed"
      ? "check the username and password in the Connection's admin Secret"
      : "check the Connection's host, port, database and sslMode";
  return new PostgresCredentialError(
    reason,
    `cannot connect to ${target(admin)} as "${admin.username}": ${errorMessage(error)}; ${fix}`,
    { code, cause: error },
  );
}

// Opening a session (fork, SCRAM) costs more than the role statements themselves, so admin
// sessions are pooled per server and credential; idle ones close, and never hold the process.
const adminPools = new Map<string, pg.Pool>();
const poolIdleMs = 30_000;
const poolSize = 4;

function adminPool(admin: PostgresAdmin): pg.Pool {
  const key = createHash("sha256").update(JSON.stringify(admin)).digest("hex");
  let pool = adminPools.get(key);
  if (!pool) {
    const created = new pg.Pool({
      ...postgresClientConfig(admin),
      max: poolSize,
      idleTimeoutMillis: poolIdleMs,
      allowExitOnIdle: true,
    });
    // An idle session's error (server restart, termination) only removes it from the pool.
    created.on("error", () => undefined);
    // A rotated Secret leaves its old pool behind: forget it once its last session is gone.
    created.on("remove", () => {
      if (created.totalCount === 0 && adminPools.get(key) === created) {
        adminPools.delete(key);
        void created.end().catch(() => undefined);
      }
    });
    adminPools.set(key, created);
    pool = created;
  }
  return pool;
}

/** Closes every pooled admin session (operator shutdown, tests). */
export async function closeAdminSessions(): Promise<void> {
  const pools = [...adminPools.values()];
  adminPools.clear();
  await Promise.all(pools.map((pool) => pool.end().catch(() => undefined)));
}

/** The session broke (terminated, server restarted), not the statement: worth a new one. */
function sessionLost(error: unknown): boolean {
  if (error instanceof PostgresCredentialError) return false;
  const code = sqlState(error);
  return code === undefined
    ? /connection|terminat|ECONNRESET|EPIPE/i.test(errorMessage(error))
    : /^(08|57P0)/.test(code);
}

/**
 * Runs work on a pooled admin session. A session that saw an error is discarded; one that was
 * lost is replaced once (every operation here is idempotent or one transaction).
 */
async function withAdmin<T>(
  admin: PostgresAdmin,
  doing: string,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let client: pg.PoolClient;
    try {
      client = await adminPool(admin).connect();
    } catch (error) {
      throw connectError(admin, error);
    }
    try {
      const result = await work(client);
      client.release();
      return result;
    } catch (error) {
      client.release(error instanceof Error ? error : new Error(String(error)));
      if (attempt === 1 && sessionLost(error)) continue;
      if (error instanceof PostgresCredentialError) throw error;
      const code = sqlState(error);
      throw new PostgresCredentialError(
        "Failed",
        `cannot ${doing} on ${target(admin)} as "${admin.username}": ${errorMessage(error)}${code ? ` (SQLSTATE ${code})` : ""}`,
        { code, cause: error },
      );
    }
  }
}

function assertRunRoleName(name: string, admin: PostgresAdmin): void {
  if (!isRunRoleName(name)) {
    throw new PostgresCredentialError(
      "RoleNotManaged",
      `refusing to manage role "${name}" on ${target(admin)}: only roles named ${runRolePrefix}… with at most ${maxIdentifierBytes} bytes are minted by langgraph-jit`,
    );
  }
}

interface ExistingRole {
  oid: number;
  rolsuper: boolean;
  rolcreaterole: boolean;
  rolcreatedb: boolean;
  rolreplication: boolean;
  rolbypassrls: boolean;
  comment: string | null;
}

/**
 * Creates the run's role, or brings an existing one of the same run up to date (re-issuance:
 * new password and validity, memberships exactly memberOf). One transaction: an action role
 * that does not exist fails it and nothing is created.
 */
export async function ensureRunRole(
  admin: PostgresAdmin,
  spec: RunRoleSpec,
): Promise<{ created: boolean }> {
  assertRunRoleName(spec.name, admin);
  const connection = spec.comment.connection;
  const memberOf = [...new Set(spec.memberOf)];
  const verifier = await scramVerifier(spec.password);
  const role = pg.escapeIdentifier(spec.name);
  const attributes = `LOGIN PASSWORD ${pg.escapeLiteral(verifier)} VALID UNTIL ${pg.escapeLiteral(spec.validUntil.toISOString())}`;

  return withAdmin(
    admin,
    `create role "${spec.name}" for connection "${connection}"`,
    async (client) => {
      await client.query("BEGIN");
      try {
        // Two replicas issuing for the same run take turns instead of racing on CREATE ROLE.
        await client.query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", [
          managedBy,
          spec.name,
        ]);
        const found = await client.query<{ missing: string[]; existing: ExistingRole | null }>(
          `SELECT ARRAY(SELECT name FROM unnest($1::text[]) AS name
                       WHERE name NOT IN (SELECT rolname FROM pg_roles)) AS missing,
                (SELECT row_to_json(r) FROM (
                   SELECT oid, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,
                          shobj_description(oid, 'pg_authid') AS comment
                     FROM pg_roles WHERE rolname = $2) AS r) AS existing`,
          [memberOf, spec.name],
        );
        const { missing, existing } = found.rows[0] ?? { missing: [], existing: null };
        if (missing.length > 0) {
          const names = missing.map((name) => `"${name}"`).join(", ");
          const which = missing.length > 1 ? `roles ${names} do` : `role ${names} does`;
          throw new PostgresCredentialError(
            "ActionRoleMissing",
            `connection "${connection}": action ${which} not exist on ${target(admin)}; create it or correct the Connection's credentials.dynamic.actionRoles (role "${spec.name}" was not created)`,
          );
        }
        if (!existing) {
          const inRoles = memberOf.length
            ? ` IN ROLE ${memberOf.map((name) => pg.escapeIdentifier(name)).join(", ")}`
            : "";
          // Explicit NO… attributes, INHERIT so the memberships confer their privileges.
          await client.query(
            `CREATE ROLE ${role} WITH ${attributes} INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS${inRoles}`,
          );
        } else {
          assertSameRun(existing, spec, admin);
          await client.query(`ALTER ROLE ${role} WITH ${attributes}`);
          await convergeMemberships(client, existing.oid, role, memberOf);
        }
        await client.query(
          `COMMENT ON ROLE ${role} IS ${pg.escapeLiteral(JSON.stringify(spec.comment))}`,
        );
        await client.query("COMMIT");
        return { created: !existing };
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw error;
      }
    },
  );
}

/** A role of this name that another run (or a person) owns, or with powers, is not touched. */
function assertSameRun(current: ExistingRole, spec: RunRoleSpec, admin: PostgresAdmin): void {
  const comment = parseRunRoleComment(current.comment);
  const powerful =
    current.rolsuper ||
    current.rolcreaterole ||
    current.rolcreatedb ||
    current.rolreplication ||
    current.rolbypassrls;
  if (
    powerful ||
    comment?.run.uid !== spec.comment.run.uid ||
    comment.connection !== spec.comment.connection
  ) {
    throw new PostgresCredentialError(
      "RoleNotManaged",
      `role "${spec.name}" already exists on ${target(admin)} but was not minted by langgraph-jit for run uid ${spec.comment.run.uid} and connection "${spec.comment.connection}"${powerful ? " (it has SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS)" : ""}; drop or rename it`,
    );
  }
}

async function convergeMemberships(
  client: pg.PoolClient,
  oid: number,
  role: string,
  memberOf: string[],
): Promise<void> {
  const held = await client.query<{ rolname: string }>(
    `SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
      WHERE m.member = $1`,
    [oid],
  );
  const have = new Set(held.rows.map((row) => row.rolname));
  const grant = memberOf.filter((name) => !have.has(name));
  const revoke = [...have].filter((name) => !memberOf.includes(name));
  const list = (names: string[]) => names.map((name) => pg.escapeIdentifier(name)).join(", ");
  if (grant.length) await client.query(`GRANT ${list(grant)} TO ${role}`);
  if (revoke.length) await client.query(`REVOKE ${list(revoke)} FROM ${role}`);
}

async function roleOid(client: pg.PoolClient, name: string): Promise<number | undefined> {
  const result = await client.query<{ oid: number }>(
    "SELECT oid FROM pg_roles WHERE rolname = $1",
    [name],
  );
  return result.rows[0]?.oid;
}

/** Terminates every session of the role in every database; waits until they are gone. */
async function terminateSessions(
  client: pg.PoolClient,
  oid: number,
  name: string,
  admin: PostgresAdmin,
): Promise<number> {
  const deadline = Date.now() + terminateTimeoutMs;
  let terminated = 0;
  for (;;) {
    const sessions = await client.query<{ pid: number }>(
      // The timeout makes pg_terminate_backend wait for the backend to exit (PostgreSQL 14+).
      `SELECT pid, pg_terminate_backend(pid, 1000) FROM pg_stat_activity
        WHERE usesysid = $1 AND pid <> pg_backend_pid()`,
      [oid],
    );
    if (sessions.rows.length === 0) return terminated;
    terminated += sessions.rows.length;
    if (Date.now() > deadline) {
      const pids = sessions.rows.map((row) => row.pid).join(", ");
      throw new PostgresCredentialError(
        "SessionsRemain",
        `sessions of role "${name}" on ${target(admin)} did not end within ${terminateTimeoutMs} ms (backend pids ${pids}); the role cannot log in again and will be dropped on retry`,
      );
    }
  }
}

export interface DropRunRoleOptions {
  /** Who receives objects the role created (through a ddl membership); the admin by default. */
  reassignTo?: string;
}

/**
 * Makes a run role stop working and removes it: NOLOGIN (no new sessions), terminates its
 * sessions in every database, reassigns and drops what it owns, drops it. REASSIGN OWNED and
 * DROP OWNED act on the admin connection's database only, the Connection's database: objects
 * or privileges of the role in another database make DROP ROLE fail with their names.
 * Idempotent: a role that does not exist is already dropped.
 */
export async function dropRunRole(
  admin: PostgresAdmin,
  name: string,
  options: DropRunRoleOptions = {},
): Promise<{ dropped: boolean; terminatedSessions: number }> {
  assertRunRoleName(name, admin);
  const role = pg.escapeIdentifier(name);
  const heir = options.reassignTo ? pg.escapeIdentifier(options.reassignTo) : "CURRENT_USER";
  return withAdmin(admin, `drop role "${name}"`, async (client) => {
    const found = await client.query<{ oid: number; held: boolean; comment: string | null }>(
      `SELECT oid, pg_has_role(CURRENT_USER, oid, 'USAGE') AS held,
              shobj_description(oid, 'pg_authid') AS comment
         FROM pg_roles WHERE rolname = $1`,
      [name],
    );
    const { oid, held, comment } = found.rows[0] ?? {};
    if (oid === undefined) return { dropped: false, terminatedSessions: 0 };
    // Every role the operator mints gets its comment in the transaction that creates it.
    if (!parseRunRoleComment(comment)) {
      throw new PostgresCredentialError(
        "RoleNotManaged",
        `refusing to drop role "${name}" on ${target(admin)}: its comment does not name a langgraph-jit run, so it was not minted by langgraph-jit`,
      );
    }
    try {
      await client.query(`ALTER ROLE ${role} WITH NOLOGIN`);
      // A CREATEROLE admin may terminate, reassign and drop only for roles whose privileges
      // it has: it takes the membership, which goes with the role.
      if (!held) await client.query(`GRANT ${role} TO CURRENT_USER`);
      let terminated = await terminateSessions(client, oid, name, admin);
      await client.query(`REASSIGN OWNED BY ${role} TO ${heir}`);
      await client.query(`DROP OWNED BY ${role}`);
      // Again: a login that passed its checks just before NOLOGIN shows up only now.
      terminated += await terminateSessions(client, oid, name, admin);
      await client.query(`DROP ROLE IF EXISTS ${role}`);
      return { dropped: true, terminatedSessions: terminated };
    } catch (error) {
      // Dropped concurrently (another replica, the sweeper): the goal is reached.
      if (sqlState(error) === "42704" && (await roleOid(client, name)) === undefined)
        return { dropped: false, terminatedSessions: 0 };
      if (sqlState(error) === "2BP01") {
        const detail = (error as { detail?: string }).detail;
        throw new PostgresCredentialError(
          "Failed",
          `role "${name}" on ${target(admin)} still owns objects or holds privileges elsewhere${detail ? ` (${detail.replaceAll("\n", "; ")})` : ""}: run REASSIGN OWNED BY and DROP OWNED BY for it in each database named, then retry`,
          { code: "2BP01", cause: error },
        );
      }
      throw error;
    }
  });
}

/** Every role the operator minted on the server, for the sweeper to match against live runs. */
export async function listRunRoles(admin: PostgresAdmin): Promise<RunRole[]> {
  return withAdmin(admin, "list run roles", async (client) => {
    const result = await client.query<{
      rolname: string;
      rolvaliduntil: Date | string | null;
      rolcanlogin: boolean;
      comment: string | null;
    }>(
      `SELECT rolname, rolvaliduntil, rolcanlogin, shobj_description(oid, 'pg_authid') AS comment
         FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname`,
      [runRolePrefix],
    );
    return result.rows
      .filter((row) => isRunRoleName(row.rolname))
      .map((row) => {
        const comment = parseRunRoleComment(row.comment);
        return {
          name: row.rolname,
          validUntil: row.rolvaliduntil instanceof Date ? row.rolvaliduntil : null,
          canLogin: row.rolcanlogin,
          ...(comment ? { comment } : {}),
        };
      });
  });
}
