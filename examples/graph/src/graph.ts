// A deterministic LangGraph workflow (no LLM) that checks what the langgraph-jit operator
// promises a graph container: loopback-only connections and no credential in sight.
import { open } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { Annotation, END, type Runtime, START, StateGraph } from "@langchain/langgraph";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import pg from "pg";

export const graphName = "langgraph-jit-example";
/** Where the sidecar's projected token is mounted; only the sidecar may read it. */
export const sidecarTokenFile = "/var/run/secrets/langgraph-jit/token";

export type Environment = Record<string, string | undefined>;

export interface Connection {
  name: string;
  url: string;
}

/** One HTTP call the graph made through a connection's sidecar listener. */
export interface Call {
  connection: string;
  method: string;
  path: string;
  status: number;
  /** The sidecar's reason when it refused the call (its JSON body's `reason`). */
  reason?: string;
  /** The response body, when it is JSON. */
  body?: unknown;
}

/** One SQL statement the graph sent through a Postgres connection's sidecar listener. */
export interface Query {
  connection: string;
  sql: string;
  /** The rows it returned, when it succeeded. */
  rows?: Record<string, unknown>[];
  /** The SQLSTATE and message it failed with (42501: the sidecar refused it). */
  code?: string;
  message?: string;
}

export interface Summary {
  graph: typeof graphName;
  ok: boolean;
  run: string | null;
  connections: Connection[];
  calls: Call[];
  queries: Query[];
  /** With GRAPH_CHECKPOINTER=postgres: the checkpoints the run's thread holds at the end. */
  checkpoints?: number;
  steps: string[];
  error?: string;
}

export interface GraphInputs {
  env: Environment;
  /** The sidecar's token file, which must not be readable here. */
  tokenFile?: string;
  /** Aborting stops the run promptly, even in the middle of `work`. */
  signal?: AbortSignal;
  /** Receives one progress line per step. */
  log?: (line: string) => void;
}

/** The variables the operator sets for each connection, e.g. LGJIT_KB_API_URL. */
const connectionVariable = /^LGJIT_([A-Z0-9_]+)_URL$/;
const secretLookingName = /(PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY)/i;
/** The schemes of the sidecar's listeners: an HTTP proxy, or Postgres for a database connection. */
const listenerProtocols = new Set(["http:", "postgres:"]);
const loopback = "127.0.0.1";
/** The longest delay one timer accepts (2^31 - 1 ms); longer ones fire at once. */
const longestTimerMs = 2 ** 31 - 1;

const RunState = Annotation.Root({
  connections: Annotation<Connection[]>({ reducer: (_, next) => next, default: () => [] }),
  /** Every problem found so far, each naming what was wrong; any one fails the run. */
  findings: Annotation<string[]>({ reducer: (all, more) => [...all, ...more], default: () => [] }),
  calls: Annotation<Call[]>({ reducer: (all, more) => [...all, ...more], default: () => [] }),
  queries: Annotation<Query[]>({ reducer: (all, more) => [...all, ...more], default: () => [] }),
  steps: Annotation<string[]>({ reducer: (all, more) => [...all, ...more], default: () => [] }),
  summary: Annotation<Summary | undefined>,
});
type State = typeof RunState.State;
type Update = typeof RunState.Update;

// Run inputs travel as LangGraph context, so no node reads process globals.
const RunContext = Annotation.Root({
  env: Annotation<Environment>,
  tokenFile: Annotation<string>,
  log: Annotation<(line: string) => void>,
});
type Context = typeof RunContext.State;

function contextOf(runtime: Runtime<Context>): Context {
  if (!runtime.context) throw new Error("the graph was invoked without its context");
  return runtime.context;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** "KB_API" -> "kb-api", the reverse of the operator's connection env naming. */
function connectionName(envPart: string): string {
  return envPart.toLowerCase().replaceAll("_", "-");
}

function checkListenerUrl(variable: string, value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${variable} is not a URL`;
  }
  if (!listenerProtocols.has(url.protocol)) {
    return `${variable} must use http: or postgres: (a sidecar listener), not ${url.protocol}`;
  }
  if (url.hostname !== loopback) {
    return `${variable} must point at the sidecar on ${loopback}, not "${url.hostname}"`;
  }
  if (url.password) return `${variable} carries a password, which only the sidecar may hold`;
  return undefined;
}

async function discover(_: State, runtime: Runtime<Context>): Promise<Update> {
  const { env, log } = contextOf(runtime);
  const connections: Connection[] = [];
  const findings: string[] = [];
  for (const variable of Object.keys(env).sort()) {
    const envPart = connectionVariable.exec(variable)?.[1];
    const value = env[variable];
    if (envPart === undefined || value === undefined) continue;
    const problem = checkListenerUrl(variable, value);
    if (problem) findings.push(problem);
    else connections.push({ name: connectionName(envPart), url: value });
  }
  if (connections.length === 0 && findings.length === 0) {
    findings.push("no connections: no LGJIT_<CONNECTION>_URL variable is set");
  }
  connections.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const problems = findings.length > 0 ? ` and ${plural(findings.length, "problem")}` : "";
  log(`discover found ${plural(connections.length, "connection")}${problems}`);
  return { connections, findings, steps: ["discover"] };
}

async function isReadable(file: string): Promise<boolean> {
  try {
    await (await open(file, "r")).close();
    return true;
  } catch {
    return false;
  }
}

async function checkNoSecrets(_: State, runtime: Runtime<Context>): Promise<Update> {
  const { env, tokenFile, log } = contextOf(runtime);
  const findings: string[] = [];
  if (await isReadable(tokenFile)) {
    findings.push(`the sidecar's token file ${tokenFile} is readable by the graph`);
  }
  // Connection variables were checked by discover: credential-free loopback URLs.
  const secretLooking = Object.keys(env)
    .filter((name) => secretLookingName.test(name) && !connectionVariable.test(name))
    .sort();
  for (const name of secretLooking) {
    findings.push(`environment variable ${name} looks like a secret`);
  }
  log(`check-no-secrets found ${plural(findings.length, "problem")}`);
  return { findings, steps: ["check-no-secrets"] };
}

/** GRAPH_CALLS: "GET /v1/docs,POST /v1/docs" (each made on every HTTP connection). */
function parseCalls(value: string | undefined): Array<{ method: string; path: string }> | string {
  const calls = [];
  for (const item of (value ?? "")
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)) {
    const match = /^([A-Z]+) (\/\S*)$/.exec(item);
    if (!match?.[1] || !match[2])
      return `GRAPH_CALLS item ${JSON.stringify(item)} is not "METHOD /path"`;
    calls.push({ method: match[1], path: match[2] });
  }
  return calls;
}

async function call(state: State, runtime: Runtime<Context>): Promise<Update> {
  const { env, log } = contextOf(runtime);
  const planned = parseCalls(env.GRAPH_CALLS);
  if (typeof planned === "string") return { findings: [planned], steps: ["call"] };
  const calls: Call[] = [];
  const findings: string[] = [];
  for (const connection of state.connections.filter((c) => c.url.startsWith("http:"))) {
    for (const { method, path } of planned) {
      try {
        const response = await fetch(new URL(path, connection.url), {
          method,
          signal: runtime.signal,
          ...(method === "GET" || method === "HEAD"
            ? {}
            : { body: "{}", headers: { "content-type": "application/json" } }),
        });
        const text = await response.text();
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        const reason =
          response.status >= 400 ? (body as { reason?: string } | undefined)?.reason : undefined;
        calls.push({
          connection: connection.name,
          method,
          path,
          status: response.status,
          ...(reason ? { reason } : { body }),
        });
        log(
          `call ${method} ${connection.name}${path}: ${response.status}${reason ? ` (${reason})` : ""}`,
        );
      } catch (error) {
        findings.push(`${method} ${connection.url}${path} failed: ${(error as Error).message}`);
      }
    }
  }
  const queries = await query(state, runtime, findings);
  return { calls, queries, findings, steps: ["call"] };
}

/** GRAPH_SQL: a JSON array of statements, each sent on every Postgres connection. */
function parseStatements(value: string | undefined): string[] | string {
  if (value === undefined) return [];
  try {
    const statements = JSON.parse(value) as unknown;
    if (Array.isArray(statements) && statements.every((item) => typeof item === "string"))
      return statements;
  } catch {
    // Reported below.
  }
  return "GRAPH_SQL must be a JSON array of SQL statements";
}

/** Runs GRAPH_SQL through each Postgres listener; a refused statement is an outcome, not a finding. */
async function query(
  state: State,
  runtime: Runtime<Context>,
  findings: string[],
): Promise<Query[]> {
  const { env, log } = contextOf(runtime);
  const statements = parseStatements(env.GRAPH_SQL);
  if (typeof statements === "string") {
    findings.push(statements);
    return [];
  }
  const queries: Query[] = [];
  for (const connection of state.connections.filter((c) => c.url.startsWith("postgres:"))) {
    if (statements.length === 0) continue;
    const client = new pg.Client({ connectionString: connection.url });
    client.on("error", () => undefined);
    try {
      await client.connect();
      for (const sql of statements) {
        try {
          const result = await client.query(sql);
          queries.push({ connection: connection.name, sql, rows: result.rows });
          log(`query ${connection.name}: ${sql}: ${result.rowCount ?? 0} rows`);
        } catch (error) {
          const { code, message } = error as { code?: string; message: string };
          queries.push({ connection: connection.name, sql, code: code ?? "", message });
          log(`query ${connection.name}: ${sql}: ${code} ${message}`);
        }
      }
    } catch (error) {
      findings.push(`${connection.url} failed: ${(error as Error).message}`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return queries;
}

/** GRAPH_WORK_SECONDS: unset means 0; otherwise a non-negative decimal number of seconds. */
function parseWorkSeconds(value: string | undefined): number | string {
  if (value === undefined) return 0;
  if (!/^\d+(\.\d+)?$/.test(value)) {
    return `GRAPH_WORK_SECONDS must be a non-negative number of seconds, not ${JSON.stringify(value)}`;
  }
  return Number(value);
}

async function work(_: State, runtime: Runtime<Context>): Promise<Update> {
  const { env, log } = contextOf(runtime);
  const seconds = parseWorkSeconds(env.GRAPH_WORK_SECONDS);
  if (typeof seconds === "string") return { findings: [seconds], steps: ["work"] };
  log(`work for ${seconds} s`);
  for (let left = seconds * 1000; left > 0; left -= longestTimerMs) {
    await sleep(Math.min(left, longestTimerMs), undefined, { signal: runtime.signal });
  }
  return { steps: ["work"] };
}

function summarize(state: Partial<State>, env: Environment, error?: string): Summary {
  const findings = error ? [...(state.findings ?? []), error] : (state.findings ?? []);
  return {
    graph: graphName,
    ok: findings.length === 0,
    run: env.LGJIT_RUN ?? null,
    connections: state.connections ?? [],
    calls: state.calls ?? [],
    queries: state.queries ?? [],
    steps: state.steps ?? [],
    ...(findings.length > 0 && { error: findings.join("; ") }),
  };
}

async function report(state: State, runtime: Runtime<Context>): Promise<Update> {
  const { env, log } = contextOf(runtime);
  const steps = [...state.steps, "report"];
  const summary = summarize({ ...state, steps }, env);
  log(summary.ok ? "report: ok" : `report: failed: ${summary.error}`);
  return { summary, steps: ["report"] };
}

/** Any finding skips the rest: the run has already failed. */
function unlessFailed<Next extends string>(next: Next) {
  return (state: State): Next | "report" => (state.findings.length > 0 ? "report" : next);
}

const workflow = new StateGraph(RunState, RunContext)
  .addNode("discover", discover)
  .addNode("check-no-secrets", checkNoSecrets)
  .addNode("call", call)
  .addNode("work", work)
  .addNode("report", report)
  .addEdge(START, "discover")
  .addEdge("discover", "check-no-secrets")
  .addConditionalEdges("check-no-secrets", unlessFailed("call"), ["call", "report"])
  .addConditionalEdges("call", unlessFailed("work"), ["work", "report"])
  .addEdge("work", "report")
  .addEdge("report", END);

export const graph = workflow.compile({ name: graphName });

/**
 * GRAPH_CHECKPOINTER=postgres keeps the run's checkpoints in DATABASE_URL's database (schema
 * public), through the sidecar like any other statement: LangGraph's own checkpointer.
 */
async function checkpointer(env: Environment): Promise<PostgresSaver | undefined> {
  if (env.GRAPH_CHECKPOINTER === undefined) return undefined;
  if (env.GRAPH_CHECKPOINTER !== "postgres" || !env.DATABASE_URL)
    throw new Error("GRAPH_CHECKPOINTER=postgres needs DATABASE_URL (one Postgres connection)");
  // A pool of our own: a session the sidecar ends (revocation) is an error to note, not a crash.
  const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
  pool.on("error", () => undefined);
  const saver = new PostgresSaver(pool, undefined, { schema: "public" });
  await saver.setup();
  return saver;
}

/** Runs the graph once; never throws: a failure or an abort is a summary with ok false. */
export async function runGraph({
  env,
  tokenFile = sidecarTokenFile,
  signal,
  log = () => {},
}: GraphInputs): Promise<Summary> {
  let last: Partial<State> = {};
  let saver: PostgresSaver | undefined;
  let checkpoints: number | undefined;
  try {
    saver = await checkpointer(env);
    const compiled = saver ? workflow.compile({ name: graphName, checkpointer: saver }) : graph;
    const configurable = { thread_id: env.LGJIT_RUN ?? graphName };
    // "values" streams the whole state after each step, so an abort still reports progress.
    const states = await compiled.stream(
      { steps: [] },
      { context: { env, tokenFile, log }, signal, streamMode: "values", configurable },
    );
    for await (const state of states) last = state;
    if (saver) {
      checkpoints = 0;
      for await (const _ of compiled.getStateHistory({ configurable })) checkpoints++;
      log(`checkpointer holds ${checkpoints} checkpoints of thread ${configurable.thread_id}`);
    }
  } catch (error) {
    const reason = signal?.aborted
      ? `stopped by ${String(signal.reason)}`
      : error instanceof Error
        ? error.message
        : String(error);
    return summarize(last, env, reason);
  } finally {
    await saver?.end();
  }
  const summary = last.summary ?? summarize(last, env, "the graph ended without a report");
  return checkpoints === undefined ? summary : { ...summary, checkpoints };
}
