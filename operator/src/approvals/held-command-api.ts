// The sidecar-facing routes of command approvals: open a HeldCommand for a command the run's
// grant holds for approval, and long-poll its decision. Both take the run JWT; the decision is
// counted from the cache on every answer, never read from the object's status.

import {
  credentialApi,
  type HoldRequest,
  type HoldState,
  maxHeldBodyBytes,
  maxHeldStatementLength,
  maxStatusWaitSeconds,
} from "../../../api/credentials.ts";
import { timerDelay } from "../../../api/timers.ts";
import {
  type AccessPolicy,
  type Action,
  type Approval,
  annotations,
  apiVersion,
  type Connection,
  type HeldCommand,
  type LangGraphRun,
  labels,
} from "../../../api/v1alpha1.ts";
import { credentialRefusal } from "../credentials/run-of-pod.ts";
import {
  bearerToken,
  type RunTokenVerify,
  type VerifiedRunToken,
} from "../credentials/run-token.ts";
import type { WatchedCache } from "../kube/cache.ts";
import { type ConnectionCaches, connectionsIn } from "../policy/namespace-connections.ts";
import type { StatusSeal } from "../runs/status-seal.ts";
import { HttpError, type Route, readBody } from "../server/https-server.ts";
import { heldCommandView, holdRule } from "./held-command-state.ts";
import type { HeldCommands } from "./held-commands.ts";

/** Undecided holds one run may have at once: each is an object in the API server. */
const maxPendingPerRun = 16;
const actions: ReadonlySet<string> = new Set(["read", "write", "ddl", "admin"]);

export interface HeldCommandRoutesOptions {
  verify: RunTokenVerify;
  cache: ConnectionCaches & {
    runs: WatchedCache<LangGraphRun>;
    heldCommands: WatchedCache<HeldCommand>;
    approvals: WatchedCache<Approval>;
    policies: WatchedCache<AccessPolicy>;
  };
  store: HeldCommands;
  seal: StatusSeal;
  now?: () => number;
}

export function heldCommandRoutes(options: HeldCommandRoutesOptions): Record<string, Route> {
  const { cache, seal, store } = options;
  const now = options.now ?? Date.now;
  // Long polls by run uid, woken when the run, its policies or an Approval of it changes.
  const waiters = new Map<string, Set<() => void>>();
  const wake = (uid: string | undefined) => {
    for (const done of waiters.get(uid ?? "") ?? []) done();
  };
  const wakeNamespace = (namespace: string | undefined, runName?: string) => {
    for (const run of cache.runs.list(namespace)) {
      if (runName === undefined || run.metadata?.name === runName) wake(run.metadata?.uid);
    }
  };
  cache.runs.onChange((run) => wake(run.metadata?.uid));
  cache.approvals.onChange((a) => wakeNamespace(a.metadata?.namespace, a.spec.run));
  cache.policies.onChange((p) => wakeNamespace(p.metadata?.namespace));

  /** The token's run, while it holds its credential. */
  const runOf = (token: VerifiedRunToken): LangGraphRun => {
    const run = cache.runs.get(token.run.namespace, token.run.name);
    if (run?.metadata?.uid !== token.sub) {
      throw new HttpError(
        401,
        "Revoked",
        `LangGraphRun ${token.run.namespace}/${token.run.name} is gone`,
      );
    }
    const refusal = credentialRefusal(run, now(), seal);
    if (refusal) throw refusal;
    return run;
  };

  const stateOf = (command: HeldCommand, run: LangGraphRun | undefined) =>
    heldCommandView({
      command,
      run,
      policies: cache.policies.list(command.metadata?.namespace),
      connections: connectionsIn(cache, command.metadata?.namespace ?? ""),
      approvals: cache.approvals.list(command.metadata?.namespace),
      seal,
      nowMs: now(),
    }).state;

  return {
    [credentialApi.holds]: {
      method: "POST",
      async handle(request) {
        const token = await options.verify(bearerToken(request.headers.authorization));
        const run = runOf(token);
        const hold = parseHoldRequest(await readBody(request, maxHeldStatementLength + 16 * 1024));
        const claim = token.grants.find((g) => g.connection === hold.connection);
        const namespace = token.run.namespace;
        const rule = holdRule(
          run,
          hold.connection,
          hold.action,
          cache.policies.list(namespace),
          connectionsIn(cache, namespace),
        );
        if (!claim?.approval?.actions.includes(hold.action) || !rule) {
          throw new HttpError(
            403,
            "AccessRevoked",
            `the run's grant does not hold "${hold.action}" on connection "${hold.connection}" for approval`,
          );
        }
        const pending = cache.heldCommands
          .list(namespace)
          .filter(
            (c) =>
              c.metadata?.annotations?.[annotations.runUid] === token.sub &&
              stateOf(c, run).phase === "Pending",
          ).length;
        if (pending >= maxPendingPerRun) {
          throw new HttpError(
            429,
            "TooManyRequests",
            `the run already has ${pending} commands waiting for approval`,
          );
        }
        const created = await store.create(namespace, heldCommandOf(run, hold));
        return { status: 201, body: stateOf(created, run) satisfies HoldState };
      },
    },
    [credentialApi.holdState]: {
      method: "GET",
      async handle(request, url, signal) {
        const name = url.searchParams.get("name") ?? "";
        const wait = url.searchParams.get("waitSeconds") ?? "0";
        if (!/^\d+$/.test(wait) || Number(wait) > maxStatusWaitSeconds || name === "") {
          throw new HttpError(
            400,
            "BadRequest",
            `name and waitSeconds (0 to ${maxStatusWaitSeconds}) are required`,
          );
        }
        const token = await options.verify(bearerToken(request.headers.authorization));
        const namespace = token.run.namespace;
        const command =
          cache.heldCommands.get(namespace, name) ?? (await store.read(namespace, name));
        if (
          command?.spec.run !== token.run.name ||
          command.metadata?.annotations?.[annotations.runUid] !== token.sub
        ) {
          throw new HttpError(404, "NotFound", `the run has no held command ${name}`);
        }
        const deadline = now() + Number(wait) * 1000;
        for (;;) {
          const run = cache.runs.get(namespace, token.run.name);
          const state = stateOf(command, run);
          const remaining = Math.min(deadline, Date.parse(state.expiresAt)) - now();
          if (state.phase !== "Pending" || remaining <= 0 || signal.aborted) {
            return { status: 200, body: state satisfies HoldState };
          }
          await waitForChange(waiters, token.sub, remaining, signal);
        }
      },
    },
  };
}

function waitForChange(
  waiters: Map<string, Set<() => void>>,
  uid: string,
  ms: number,
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve) => {
    const set = waiters.get(uid) ?? new Set();
    waiters.set(uid, set);
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      set.delete(done);
      if (set.size === 0) waiters.delete(uid);
      resolve();
    };
    // A little past the expiry, so the answer after it says Expired.
    const timer = setTimeout(done, timerDelay(ms + 10));
    signal.addEventListener("abort", done);
    set.add(done);
  });
}

/** The object for one held command: owned by the run, so it goes with it. */
function heldCommandOf(run: LangGraphRun, hold: HoldRequest): HeldCommand {
  const summary = hold.http
    ? `${hold.http.method} ${hold.http.path}`
    : (hold.sql?.statement ?? "").replace(/\s+/g, " ").trim();
  return {
    apiVersion,
    kind: "HeldCommand",
    metadata: {
      generateName: `${run.metadata?.name}-`,
      labels: { [labels.run]: run.metadata?.name ?? "" },
      annotations: { [annotations.runUid]: run.metadata?.uid ?? "" },
      ownerReferences: [
        {
          apiVersion,
          kind: "LangGraphRun",
          name: run.metadata?.name ?? "",
          uid: run.metadata?.uid ?? "",
        },
      ],
    },
    spec: {
      run: run.metadata?.name ?? "",
      connection: hold.connection,
      action: hold.action,
      summary: summary.length > 256 ? `${summary.slice(0, 255)}…` : summary,
      ...(hold.http ? { http: hold.http } : {}),
      ...(hold.sql ? { sql: hold.sql } : {}),
      ...(hold.body ? { body: hold.body } : {}),
    },
  };
}

/** The request's HoldRequest, checked field by field; anything else is a 400 naming it. */
export function parseHoldRequest(text: string): HoldRequest {
  let value: Partial<HoldRequest>;
  try {
    value = JSON.parse(text) as Partial<HoldRequest>;
  } catch {
    throw new HttpError(400, "BadRequest", "the body is not JSON");
  }
  const bad = (field: string, why: string) => new HttpError(400, "BadRequest", `${field}: ${why}`);
  if (typeof value !== "object" || value === null) throw bad("body", "not a HoldRequest");
  if (
    typeof value.connection !== "string" ||
    !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(value.connection)
  ) {
    throw bad("connection", "not a Connection name");
  }
  if (typeof value.action !== "string" || !actions.has(value.action)) {
    throw bad("action", "must be read, write, ddl or admin");
  }
  const http = value.http;
  const sql = value.sql;
  if ((http === undefined) === (sql === undefined)) throw bad("http, sql", "exactly one is needed");
  if (http !== undefined) {
    if (typeof http.method !== "string" || !/^[A-Z]{1,16}$/.test(http.method))
      throw bad("http.method", "not a method");
    if (typeof http.path !== "string" || !http.path.startsWith("/") || http.path.length > 8192) {
      throw bad("http.path", "not a normalized path of at most 8192 characters");
    }
  }
  if (
    sql !== undefined &&
    (typeof sql.statement !== "string" ||
      sql.statement === "" ||
      sql.statement.length > maxHeldStatementLength)
  ) {
    throw bad("sql.statement", `a statement of 1 to ${maxHeldStatementLength} characters`);
  }
  const body = value.body;
  if (body !== undefined) {
    if (typeof body.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(body.sha256))
      throw bad("body.sha256", "not a SHA-256 in hex");
    if (!Number.isSafeInteger(body.bytes) || body.bytes < 0 || body.bytes > maxHeldBodyBytes) {
      throw bad("body.bytes", `a size of 0 to ${maxHeldBodyBytes}`);
    }
  }
  return {
    connection: value.connection,
    action: value.action as Action,
    ...(http ? { http: { method: http.method, path: http.path } } : {}),
    ...(sql ? { sql: { statement: sql.statement } } : {}),
    ...(body ? { body: { sha256: body.sha256, bytes: body.bytes } } : {}),
  };
}
