import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Environment, type GraphInputs, runGraph } from "./graph.ts";

const kb = { LGJIT_KB_URL: "http://127.0.0.1:15432" };
const kbApi = { LGJIT_KB_API_URL: "http://127.0.0.1:15433" };

describe("the example graph", () => {
  let directory: string;
  let absentTokenFile: string;
  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "lgjit-example-graph-"));
    absentTokenFile = join(directory, "no-token");
  });
  after(() => rm(directory, { recursive: true, force: true }));

  const run = (env: Environment, inputs: Partial<GraphInputs> = {}) =>
    runGraph({ env, tokenFile: absentTokenFile, ...inputs });

  it("reports every loopback connection by name, after every step", async () => {
    const lines: string[] = [];
    const summary = await run(
      { ...kbApi, ...kb, LGJIT_RUN: "kb-refresh", HOME: "/app" },
      { log: (line) => lines.push(line) },
    );
    assert.deepEqual(summary, {
      graph: "langgraph-jit-example",
      ok: true,
      run: "kb-refresh",
      connections: [
        { name: "kb", url: "http://127.0.0.1:15432" },
        { name: "kb-api", url: "http://127.0.0.1:15433" },
      ],
      calls: [],
      queries: [],
      steps: ["discover", "check-no-secrets", "call", "work", "report"],
    });
    assert.equal(lines[0], "discover found 2 connections");
  });

  it("gives the same summary for the same environment in any order", async () => {
    const first = await run({ ...kb, ...kbApi });
    const second = await run({ ...kbApi, ...kb });
    assert.deepEqual(first, second);
    assert.equal(first.run, null);
  });

  it("accepts the Postgres listener the operator gives a database connection", async () => {
    const summary = await run({ LGJIT_KB_POSTGRES_URL: "postgres://run@127.0.0.1:15432/kb" });
    assert.equal(summary.ok, true);
    assert.deepEqual(summary.connections, [
      { name: "kb-postgres", url: "postgres://run@127.0.0.1:15432/kb" },
    ]);
  });

  it("fails on GRAPH_SQL that is not a JSON array of statements, naming it", async () => {
    const summary = await run({ ...kb, GRAPH_SQL: "SELECT 1" });
    assert.equal(summary.ok, false);
    assert.match(summary.error ?? "", /GRAPH_SQL must be a JSON array of SQL statements/);
  });

  it("needs DATABASE_URL for the Postgres checkpointer", async () => {
    const summary = await run({ ...kb, GRAPH_CHECKPOINTER: "postgres" });
    assert.equal(summary.ok, false);
    assert.match(summary.error ?? "", /GRAPH_CHECKPOINTER=postgres needs DATABASE_URL/);
  });

  it("refuses a connection that bypasses the sidecar, naming its variable", async () => {
    const summary = await run({ ...kb, LGJIT_KB_API_URL: "http://kb-api.agents.svc:8443" });
    assert.equal(summary.ok, false);
    assert.match(summary.error ?? "", /LGJIT_KB_API_URL must point at the sidecar on 127\.0\.0\.1/);
    assert.deepEqual(summary.steps, ["discover", "check-no-secrets", "report"]);
  });

  it("refuses https, which the sidecar's listeners do not speak", async () => {
    const summary = await run({ LGJIT_KB_URL: "https://127.0.0.1:15432" });
    assert.equal(summary.ok, false);
    assert.match(summary.error ?? "", /LGJIT_KB_URL must use http: .*not https:/);
  });

  it("refuses a connection URL that is not a URL or carries a password", async () => {
    const summary = await run({
      LGJIT_KB_URL: "127.0.0.1:15432",
      LGJIT_DB_URL: "postgres://run:hunter2@127.0.0.1:15434/kb",
    });
    assert.equal(summary.ok, false);
    assert.match(summary.error ?? "", /LGJIT_KB_URL is not a URL/);
    assert.match(summary.error ?? "", /LGJIT_DB_URL carries a password/);
    assert.doesNotMatch(summary.error ?? "", /hunter2/);
  });

  it("refuses to run without any connection", async () => {
    const summary = await run({ HOME: "/app", LGJIT_RUN: "kb-refresh" });
    assert.equal(summary.ok, false);
    assert.match(summary.error ?? "", /no connections/);
  });

  it("refuses a secret-looking variable, naming it but not its value", async () => {
    const summary = await run({ ...kb, DB_PASSWORD: "hunter2", kb_api_key: "k" });
    assert.equal(summary.ok, false);
    assert.match(summary.error ?? "", /environment variable DB_PASSWORD looks like a secret/);
    assert.match(summary.error ?? "", /environment variable kb_api_key looks like a secret/);
    assert.doesNotMatch(summary.error ?? "", /hunter2/);
    assert.ok(!summary.steps.includes("work"));
  });

  it("does not take a connection named like a secret for one", async () => {
    const summary = await run({ LGJIT_TOKEN_SERVICE_URL: "http://127.0.0.1:15432" });
    assert.equal(summary.ok, true);
    assert.deepEqual(summary.connections, [
      { name: "token-service", url: "http://127.0.0.1:15432" },
    ]);
  });

  it("refuses to run when the sidecar's token file is readable", async () => {
    const tokenFile = join(directory, "token");
    await writeFile(tokenFile, "eyJhbGciOi...");
    const summary = await run(kb, { tokenFile });
    assert.equal(summary.ok, false);
    assert.equal(summary.error, `the sidecar's token file ${tokenFile} is readable by the graph`);
  });

  for (const value of ["-1", "soon", "", "1e3", "Infinity"]) {
    it(`refuses GRAPH_WORK_SECONDS=${JSON.stringify(value)}`, async () => {
      const summary = await run({ ...kb, GRAPH_WORK_SECONDS: value });
      assert.equal(summary.ok, false);
      assert.equal(
        summary.error,
        `GRAPH_WORK_SECONDS must be a non-negative number of seconds, not ${JSON.stringify(value)}`,
      );
      assert.deepEqual(summary.steps, ["discover", "check-no-secrets", "call", "work", "report"]);
    });
  }

  it("works for GRAPH_WORK_SECONDS seconds", async () => {
    const started = performance.now();
    const summary = await run({ ...kb, GRAPH_WORK_SECONDS: "0.2" });
    assert.equal(summary.ok, true);
    assert.ok(performance.now() - started >= 190);
  });

  it("stops promptly in the middle of work when aborted", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort("SIGTERM"), 100);
    const started = performance.now();
    const summary = await run({ ...kb, GRAPH_WORK_SECONDS: "30" }, { signal: controller.signal });
    assert.ok(performance.now() - started < 2000);
    assert.equal(summary.ok, false);
    assert.equal(summary.error, "stopped by SIGTERM");
    assert.deepEqual(summary.steps, ["discover", "check-no-secrets", "call"]);
    assert.deepEqual(summary.connections, [{ name: "kb", url: "http://127.0.0.1:15432" }]);
  });

  it("makes GRAPH_CALLS on each HTTP connection and reports what the sidecar answered", async () => {
    const server = createServer((req, res) => {
      const allowed = req.method === "GET";
      res.writeHead(allowed ? 200 : 403, { "content-type": "application/json" });
      res.end(JSON.stringify(allowed ? { items: [{ id: 1 }] } : { reason: "ActionNotGranted" }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const summary = await run({
        LGJIT_KB_API_URL: `http://127.0.0.1:${port}`,
        GRAPH_CALLS: "GET /v1/docs, POST /v1/docs",
      });
      assert.equal(summary.ok, true, summary.error);
      assert.deepEqual(summary.calls, [
        {
          connection: "kb-api",
          method: "GET",
          path: "/v1/docs",
          status: 200,
          body: { items: [{ id: 1 }] },
        },
        {
          connection: "kb-api",
          method: "POST",
          path: "/v1/docs",
          status: 403,
          reason: "ActionNotGranted",
        },
      ]);
    } finally {
      server.close();
    }
  });

  it("refuses GRAPH_CALLS that are not METHOD /path, and fails when a listener is not there", async () => {
    const bad = await run({ ...kb, GRAPH_CALLS: "fetch everything" });
    assert.equal(bad.error, 'GRAPH_CALLS item "fetch everything" is not "METHOD /path"');
    const closed = await run({ LGJIT_KB_API_URL: "http://127.0.0.1:1", GRAPH_CALLS: "GET /" });
    assert.equal(closed.ok, false);
    assert.match(closed.error ?? "", /^GET http:\/\/127\.0\.0\.1:1\/ failed/);
  });
});
