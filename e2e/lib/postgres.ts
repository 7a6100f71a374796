// A real PostgreSQL 15 (Debian's package) for integration tests: a private data directory
// and port on 127.0.0.1, password (SCRAM) authentication, and a "kb" application database
// with the action roles a Connection's dynamic credentials grant membership in.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  chownSync,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);
/** Where the PostgreSQL binaries (postgres, initdb, psql) are. */
export const binDir = process.env.LGJIT_POSTGRES_BIN ?? postgresBinDir();
const tempPrefix = "lgjit-pg-";
/** Holds the pid of the test process that owns a data directory. */
const ownerFile = "owner.pid";

/** The application database and its action roles, as a Connection would name them. */
export interface KnowledgeBase {
  database: "kb";
  /** A CREATEROLE (not superuser) login: what a Connection's admin Secret would hold. */
  adminUser: string;
  adminPassword: string;
  actionRoles: { read: "kb_read"; write: "kb_write"; ddl: "kb_owner" };
}

export interface PostgresServer {
  host: "127.0.0.1";
  port: number;
  /** The bootstrap superuser. */
  adminUser: string;
  adminPassword: string;
  /** The maintenance database ("postgres"). */
  database: string;
  kb: KnowledgeBase;
  /** A postgres:// URL; defaults to the superuser, the maintenance database and loopback. */
  url(user?: string, password?: string, database?: string, host?: string): string;
  /** A connected client (errors surface on its next query); the caller ends it. */
  connect(user?: string, password?: string, database?: string): Promise<pg.Client>;
  /** The server log so far (for failure messages). */
  log(): string;
  /** Fast shutdown, then removes the data directory. Idempotent. */
  stop(): Promise<void>;
}

// A server must not outlive the test process that started it, even when that process
// crashes: setpriv's parent-death signal covers SIGKILL, these handlers the rest.
const servers = new Set<ChildProcess>();
const stopAll = () => {
  for (const server of servers) server.kill("SIGQUIT");
};
process.on("exit", stopAll);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    stopAll();
    process.kill(process.pid, signal);
  });
}

/** Debian's PostgreSQL 15, or the newest version installed when 15 is not. */
function postgresBinDir(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .map(Number)
        .filter((version) => existsSync(join(root, String(version), "bin", "postgres")))
    : [];
  const version = versions.includes(15) ? 15 : Math.max(15, ...versions);
  return join(root, String(version), "bin");
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === "string") throw new Error("no free port on 127.0.0.1");
  return address.port;
}

/** The OS user the server runs as: postgres refuses to run as root. */
function serverUser(): { uid: number; gid: number } {
  const uid = process.getuid?.() ?? 0;
  if (uid !== 0) return { uid, gid: process.getgid?.() ?? 0 };
  const entry = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .map((line) => line.split(":"))
    .find((fields) => fields[0] === "postgres");
  if (!entry)
    throw new Error('running as root needs the "postgres" OS user: apt-get install postgresql');
  return { uid: Number(entry[2]), gid: Number(entry[3]) };
}

/** Runs a PostgreSQL binary as the server user, killed with SIGQUIT if this process dies. */
function asServerUser(binary: string, args: string[]): [string, string[]] {
  const { uid, gid } = serverUser();
  return [
    "setpriv",
    [
      `--reuid=${uid}`,
      `--regid=${gid}`,
      "--clear-groups",
      "--pdeathsig=SIGQUIT",
      "--",
      join(binDir, binary),
      ...args,
    ],
  ];
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes data directories left by test processes that died before cleaning up. */
function removeStaleDirectories(): void {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(tempPrefix)) continue;
    const dir = join(tmpdir(), entry);
    try {
      const owner = Number(readFileSync(join(dir, ownerFile), "utf8"));
      if (!processAlive(owner)) rmSync(dir, { recursive: true, force: true });
    } catch {
      // Being created or removed by another process right now.
    }
  }
}

function serverConfig(port: number, nodeAccess: boolean, tls: boolean): string[] {
  const settings: Record<string, string> = {
    ...(tls ? { ssl: "on", ssl_cert_file: "server.crt", ssl_key_file: "server.key" } : {}),
    listen_addresses: nodeAccess ? `127.0.0.1,${testNode.address}` : "127.0.0.1",
    port: String(port),
    // TCP only: no socket files to collide with a system cluster's.
    unix_socket_directories: "",
    // Test data is disposable; durability only costs time.
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    max_connections: "200",
    password_encryption: "scram-sha-256",
    log_line_prefix: "%m [%p] %q%u@%d ",
  };
  return Object.entries(settings).flatMap(([key, value]) => ["-c", `${key}=${value}`]);
}

const knowledgeBaseSql = (adminUser: string, kbPassword: string) => [
  `CREATE ROLE kb_read NOLOGIN`,
  `CREATE ROLE kb_write NOLOGIN`,
  `CREATE ROLE kb_owner NOLOGIN`,
  // PostgreSQL 15 lets CREATEROLE grant any non-superuser role: no superuser needed.
  `CREATE ROLE kb_admin LOGIN CREATEROLE PASSWORD ${pg.escapeLiteral(kbPassword)}`,
  `CREATE DATABASE kb OWNER ${adminUser}`,
];

const knowledgeBaseSchemaSql = [
  `REVOKE ALL ON DATABASE kb FROM PUBLIC`,
  `GRANT CONNECT ON DATABASE kb TO kb_read, kb_write, kb_owner, kb_admin`,
  `ALTER SCHEMA public OWNER TO kb_owner`,
  `CREATE TABLE public.docs (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
     title text NOT NULL, body text NOT NULL DEFAULT '')`,
  `ALTER TABLE public.docs OWNER TO kb_owner`,
  `INSERT INTO public.docs (title, body) VALUES ('welcome', 'first document')`,
  `GRANT USAGE ON SCHEMA public TO kb_read, kb_write`,
  `GRANT SELECT ON public.docs TO kb_read`,
  `GRANT INSERT, UPDATE, DELETE ON public.docs TO kb_write`,
];

/** Starts a private PostgreSQL 15 and creates the kb database with its action roles. */
/** The test node's bridge address and pod range (e2e/cluster/lib.sh). */
export const testNode = { address: "10.244.0.1", podRange: "10.244.0.0/24" };

export interface PostgresOptions {
  /** Also listen on the test node's bridge address and let its pods log in (by password). */
  nodeAccess?: boolean;
  /** Serve TLS with this certificate (plaintext stays possible, as libpq's sslmode decides). */
  tls?: { certPem: string; keyPem: string };
}

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  if (!existsSync(join(binDir, "postgres")))
    throw new Error(`${binDir}/postgres is missing: apt-get install postgresql`);
  removeStaleDirectories();
  const { uid, gid } = serverUser();
  const dir = mkdtempSync(join(tmpdir(), tempPrefix));
  chownSync(dir, uid, gid);
  writeFileSync(join(dir, ownerFile), String(process.pid));
  const dataDir = join(dir, "data");
  const logFile = join(dir, "server.log");
  const adminUser = "lgjit_test_admin";
  const adminPassword = randomBytes(24).toString("base64url");
  const passwordFile = join(dir, "admin-password");
  writeFileSync(passwordFile, adminPassword, { mode: 0o600 });
  chownSync(passwordFile, uid, gid);

  const [setpriv, initdbArgs] = asServerUser("initdb", [
    `--pgdata=${dataDir}`,
    `--username=${adminUser}`,
    `--pwfile=${passwordFile}`,
    "--auth-host=scram-sha-256",
    "--auth-local=reject",
    "--encoding=UTF8",
    "--locale=C",
    "--no-sync",
  ]);
  await run(setpriv, initdbArgs).catch((error: { stderr?: string }) => {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${error.stderr ?? error}`);
  });
  rmSync(passwordFile);
  if (options.tls) {
    for (const [name, pem] of [
      ["server.crt", options.tls.certPem],
      ["server.key", options.tls.keyPem],
    ] as const) {
      const file = join(dataDir, name);
      writeFileSync(file, pem, { mode: 0o600 });
      chownSync(file, uid, gid);
    }
  }
  if (options.nodeAccess) {
    appendFileSync(
      join(dataDir, "pg_hba.conf"),
      `host all all ${testNode.podRange} scram-sha-256\n`,
    );
  }

  let child: ChildProcess | undefined;
  let port = 0;
  const readLog = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
  const url = (
    user = adminUser,
    password = adminPassword,
    database = "postgres",
    host = "127.0.0.1",
  ) =>
    `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}`;
  const connect = async (user = adminUser, password = adminPassword, database = "postgres") => {
    const client = new pg.Client({ host: "127.0.0.1", port, user, password, database });
    // A terminated idle session (a revoked role's) fails its next query; unhandled, the
    // 'error' event would end the test process instead.
    client.on("error", () => undefined);
    await client.connect();
    return client;
  };

  const stop = async () => {
    const running = child;
    child = undefined;
    if (running && running.exitCode === null && running.signalCode === null) {
      const exited = new Promise((resolve) => running.once("exit", resolve));
      running.kill("SIGINT"); // fast shutdown: disconnects clients, no waiting for them
      const timer = setTimeout(() => running.kill("SIGQUIT"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    if (running) servers.delete(running);
    rmSync(dir, { recursive: true, force: true });
  };

  // A freed port can be taken before the server binds it: try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    const log = createWriteStream(logFile, { flags: "a" });
    const [command, args] = asServerUser("postgres", [
      "-D",
      dataDir,
      ...serverConfig(port, options.nodeAccess ?? false, options.tls !== undefined),
    ]);
    const started = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    child = started;
    servers.add(started);
    started.stdout?.pipe(log);
    started.stderr?.pipe(log);
    const ready = await waitUntilAccepting(started, () => connect());
    if (ready) break;
    servers.delete(started);
    child = undefined;
    if (started.exitCode === null) started.kill("SIGQUIT");
    if (attempt === 3 || !/could not bind|Address already in use/.test(readLog())) {
      const log = readLog();
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`postgres did not start on 127.0.0.1:${port}:\n${log}`);
    }
  }

  const kbPassword = randomBytes(24).toString("base64url");
  try {
    const admin = await connect();
    try {
      for (const statement of knowledgeBaseSql(adminUser, kbPassword)) await admin.query(statement);
    } finally {
      await admin.end();
    }
    const kb = await connect(adminUser, adminPassword, "kb");
    try {
      for (const statement of knowledgeBaseSchemaSql) await kb.query(statement);
    } finally {
      await kb.end();
    }
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    host: "127.0.0.1",
    port,
    adminUser,
    adminPassword,
    database: "postgres",
    kb: {
      database: "kb",
      adminUser: "kb_admin",
      adminPassword: kbPassword,
      actionRoles: { read: "kb_read", write: "kb_write", ddl: "kb_owner" },
    },
    url,
    connect,
    log: readLog,
    stop,
  };
}

/** Polls until the server accepts an authenticated connection; false if it exited first. */
async function waitUntilAccepting(
  server: ChildProcess,
  connect: () => Promise<pg.Client>,
  timeoutMs = 30_000,
): Promise<boolean> {
  const exited = new Promise<false>((resolve) => server.once("exit", () => resolve(false)));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null) return false;
    const client = await Promise.race([connect().catch(() => undefined), exited]);
    if (client) {
      await client.end();
      return true;
    }
    if (client === false) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

/** Registers hooks giving the calling suite its own PostgreSQL server, stopped afterwards. */
export function usePostgres(): { server: PostgresServer } {
  const suite = {} as { server: PostgresServer };
  before(async () => {
    suite.server = await startPostgres();
  });
  after(async () => {
    await suite.server?.stop();
  });
  return suite;
}
