// The clients a graph really uses, through the sidecar with a read, write and ddl grant:
// LangGraph's Postgres checkpointer saving and resuming a graph, pgbench in its three protocol
// modes, psql's \copy, cursors with row limits, LISTEN/NOTIFY, and the failures a session must
// survive or report (a server that ends the session, revocation in the middle of a query).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Annotation, END, type MemorySaver, START, StateGraph } from "@langchain/langgraph";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import pg from "pg";
import Cursor from "pg-cursor";
import postgres from "postgres";
import { generateCertificateAuthority } from "../../../operator/src/admission/webhook-certs.ts";
import { type PostgresFixture, startPostgresFixture } from "../testing/postgres-fixture.ts";

const run = promisify(execFile);
let fixture: PostgresFixture;
const grant = { actions: ["read", "write", "ddl"] as ("read" | "write" | "ddl")[] };

before(async () => {
  fixture = await startPostgresFixture(grant);
  // As a dynamic role with ddl would be: a member of the role that owns the schema (kb_owner),
  // and here also allowed to create the checkpointer's schema.
  const admin = await fixture.server.connect(
    fixture.server.adminUser,
    fixture.server.adminPassword,
    "kb",
  );
  await admin.query(`GRANT kb_owner TO ${fixture.credential.username}`);
  await admin.query(`GRANT CREATE ON DATABASE kb TO ${fixture.credential.username}`);
  await admin.query(`CREATE TABLE public.events (id serial PRIMARY KEY, body text)`);
  await admin.query(`GRANT SELECT, INSERT ON public.events TO kb_read, kb_write`);
  await admin.query(`GRANT USAGE ON SEQUENCE public.events_id_seq TO kb_write`);
  await admin.end();
});
after(() => fixture?.stop());

const env = { ...process.env, PGPASSWORD: "anything", PGCONNECT_TIMEOUT: "5" };

describe("LangGraph's Postgres checkpointer through the sidecar", () => {
  it("sets up its tables, saves a graph's state and resumes it in a new process's saver", async () => {
    const Counter = Annotation.Root({
      count: Annotation<number>({ reducer: (a, b) => a + b, default: () => 0 }),
    });
    const build = (checkpointer: PostgresSaver | MemorySaver) =>
      new StateGraph(Counter)
        .addNode("increment", () => ({ count: 1 }))
        .addEdge(START, "increment")
        .addEdge("increment", END)
        .compile({ checkpointer });
    const config = { configurable: { thread_id: "thread-1" } };
    const first = PostgresSaver.fromConnString(fixture.url, { schema: "graph" });
    try {
      await first.setup();
      await build(first).invoke({ count: 0 }, config);
      await build(first).invoke({ count: 0 }, config);
    } finally {
      await first.end();
    }
    const second = PostgresSaver.fromConnString(fixture.url, { schema: "graph" });
    try {
      const resumed = await build(second).getState(config);
      assert.equal(resumed.values.count, 2);
      const history = [];
      for await (const snapshot of build(second).getStateHistory(config)) history.push(snapshot);
      assert.ok(history.length >= 4, `${history.length} checkpoints`);
    } finally {
      await second.end();
    }
    const ddl = fixture.records.filter((record) => record.sql?.action === "ddl");
    assert.ok(ddl.some((record) => record.sql?.command === "CREATE TABLE"));
    assert.ok(!fixture.records.some((record) => record.kind === "denied"));
  });
});

describe("pgbench through the sidecar", () => {
  before(async () => {
    await run("pgbench", ["-i", "-q", "-s", "1", "-n", "--foreign-keys", fixture.url], {
      env,
    }).catch((error: { stderr: string }) => assert.fail(`pgbench -i: ${error.stderr}`));
  });

  for (const mode of ["simple", "extended", "prepared"]) {
    it(`runs the TPC-B-like script in ${mode} mode with 4 clients`, async () => {
      const { stdout } = await run(
        "pgbench",
        ["-n", "-c", "4", "-t", "50", "-M", mode, fixture.url],
        { env },
      );
      assert.match(stdout, /number of transactions actually processed: 200\/200/);
      assert.match(stdout, /number of failed transactions: 0/);
    });
  }
});

describe("psql's \\copy and COPY FROM STDIN", () => {
  it("copies rows in through the sidecar and records the COPY as a write", async () => {
    const rows = "copied one\ncopied two\n";
    const child = execFile(
      "psql",
      [fixture.url, "-X", "-v", "ON_ERROR_STOP=1", "-c", "\\copy events (body) FROM STDIN"],
      { env },
    );
    child.stdin?.end(rows);
    const code = await new Promise((resolve) => child.on("exit", resolve));
    assert.equal(code, 0);
    const { stdout } = await run(
      "psql",
      [
        fixture.url,
        "-X",
        "-A",
        "-t",
        "-c",
        "SELECT count(*) FROM events WHERE body LIKE 'copied%'",
      ],
      { env },
    );
    assert.equal(stdout.trim(), "2");
    const copy = fixture.records.findLast((record) => record.sql?.command === "COPY");
    assert.equal(copy?.sql?.action, "write");
    assert.equal(copy?.sql?.rows, 2);
  });
});

describe("sessions as clients expect them", () => {
  it("streams a cursor in batches (portal row limits) and passes NOTIFY to a listener", async () => {
    const sql = postgres(fixture.url, { password: "anything", max: 2 });
    try {
      const batches: number[] = [];
      await sql`SELECT generate_series(1, 25) AS n`.cursor(10, (rows) => {
        batches.push(rows.length);
      });
      assert.deepEqual(batches, [10, 10, 5]);
      const heard = new Promise<string>((resolve) => {
        void sql.listen("docs_changed", resolve);
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      await sql.notify("docs_changed", "hello");
      assert.equal(await heard, "hello");
    } finally {
      await sql.end();
    }
  });

  it("reads a node-postgres cursor with a parameter in batches and closes it early", async () => {
    const client = new pg.Client({ connectionString: fixture.url, password: "anything" });
    await client.connect();
    try {
      const cursor = client.query(
        new Cursor("SELECT n FROM generate_series(1, $1::int) AS n", [25]),
      );
      const first = await cursor.read(10);
      const second = await cursor.read(10);
      assert.deepEqual(
        [...first, ...second].map((row) => row.n),
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      await cursor.close();
      // The portal closed mid-result: the session goes on as a direct one would.
      const { rows } = await client.query("SELECT count(*)::int AS n FROM public.events");
      assert.equal(typeof rows[0].n, "number");
    } finally {
      await client.end();
    }
  });

  it("logs in as the run's role whatever user, database and options the client names", async () => {
    const graph = new pg.Client({
      connectionString: `postgres://postgres@127.0.0.1:${fixture.port}/postgres`,
      password: "anything",
      options: "-c role=kb_owner -c search_path=evil",
    });
    await graph.connect();
    try {
      const { rows } = await graph.query(
        "SELECT current_user AS who, current_database() AS db, current_setting('search_path') AS path",
      );
      assert.deepEqual(rows[0], {
        who: fixture.credential.username,
        db: "kb",
        path: '"$user", public',
      });
    } finally {
      await graph.end();
    }
  });

  it("answers SSLRequest with N: sslmode=prefer connects, sslmode=require is told no", async () => {
    const prefer = await run(
      "psql",
      [`${fixture.url}?sslmode=prefer`, "-X", "-A", "-t", "-c", "SELECT 1"],
      { env },
    );
    assert.equal(prefer.stdout.trim(), "1");
    await assert.rejects(
      run("psql", [`${fixture.url}?sslmode=require`, "-X", "-c", "SELECT 1"], { env }),
      /server does not support SSL/,
    );
  });

  it("ends quietly when the client terminates: no error after Terminate", async () => {
    const pool = new pg.Pool({ connectionString: fixture.url, password: "anything", max: 2 });
    const errors: Error[] = [];
    pool.on("error", (error) => errors.push(error));
    await Promise.all([pool.query("SELECT 1"), pool.query("SELECT 2")]);
    await pool.end();
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(errors, []);
  });

  it("reports a server that ends the session as a FATAL error, and the next session works", async () => {
    const graph = new pg.Client({ connectionString: fixture.url, password: "anything" });
    const failed = new Promise<Error>((resolve) => graph.on("error", resolve));
    await graph.connect();
    const { rows } = await graph.query("SELECT pg_backend_pid() AS pid");
    const admin = await fixture.server.connect();
    await admin.query("SELECT pg_terminate_backend($1)", [rows[0].pid]);
    await admin.end();
    const error = await failed;
    assert.match(
      error.message,
      /terminating connection due to administrator command|server closed the connection/,
    );
    const next = new pg.Client({ connectionString: fixture.url, password: "anything" });
    await next.connect();
    assert.equal((await next.query("SELECT 1 AS one")).rows[0].one, 1);
    await next.end();
  });

  it("verifies the server's certificate: a server the Connection's CA did not sign gets no login", async () => {
    const other = await generateCertificateAuthority({
      commonName: "not-the-servers-ca",
      validityDays: 1,
    });
    await fixture.grant(grant, { caPem: other.certPem });
    const graph = new pg.Client({ connectionString: fixture.url, password: "anything" });
    graph.on("error", () => undefined);
    await assert.rejects(
      graph.connect(),
      /cannot connect to the server at 127\.0\.0\.1:\d+: .*certificate/,
    );
    await fixture.grant(grant);
  });

  it("refuses an action the grant holds for approval when the sidecar cannot hold it", async () => {
    await fixture.grant({
      ...grant,
      approval: {
        actions: ["write"],
        approvers: [{ kind: "Group", name: "security" }],
        approvals: 1,
        timeout: "10m",
      },
    });
    const graph = new pg.Client({ connectionString: fixture.url, password: "anything" });
    await graph.connect();
    try {
      await assert.rejects(
        graph.query("INSERT INTO events (body) VALUES ('held')"),
        (error: pg.DatabaseError) =>
          error.code === "42501" && /cannot hold statements for approval/.test(error.message),
      );
      assert.equal((await graph.query("SELECT 1 AS one")).rows[0].one, 1);
    } finally {
      await graph.end();
    }
    assert.equal(
      fixture.records.findLast((record) => record.kind === "denied")?.reason,
      "ApprovalUnavailable",
    );
    await fixture.grant(grant);
  });

  it("ends a session in the middle of a query when the credential is revoked", async () => {
    const graph = new pg.Client({ connectionString: fixture.url, password: "anything" });
    graph.on("error", () => undefined);
    await graph.connect();
    const sleeping = graph.query("SELECT pg_sleep(30)");
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = Date.now();
    fixture.revoke();
    await assert.rejects(sleeping, /credential was revoked/);
    assert.ok(Date.now() - started < 2_000);
    await fixture.grant(grant);
  });
});
