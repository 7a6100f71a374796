// The session event schema shared by the sidecar (which records) and the operator (which
// stores and serves): one event per HTTP request, SQL statement, denial or credential change on
// a run's connections. No credential, no masked value and no SQL constant ever appears in one.

export const sessionEventSchemaVersion = 1;

/** What a sidecar records. */
export const sessionEventKinds = [
  "request",
  "statement",
  "denied",
  "masked",
  "tunnel",
  "credential-refresh",
  "error",
] as const;
/** The operator's own event, never a sidecar's: how the run's approval was decided (seq 0). */
export const runApprovalKind = "approval";
export type SessionEventKind = (typeof sessionEventKinds)[number] | typeof runApprovalKind;

/** What a data path reports; the sidecar's event buffer adds the run and the sequence number. */
export interface SessionRecord {
  /** RFC 3339 with milliseconds, when the request arrived. */
  time: string;
  kind: SessionEventKind;
  connection?: string;
  method?: string;
  /** The normalized path the rules matched (never the query string: it may carry secrets). */
  path?: string;
  /** The query's parameter names, in order, without repeats; never their values. */
  query?: string[];
  /** The status the graph received. */
  status?: number;
  /** Request body bytes from the graph, and response body bytes to it. */
  bytesIn?: number;
  bytesOut?: number;
  durationMs?: number;
  /** The grant's rule that allowed the request, or the one that came closest to a denial. */
  rule?: string;
  /** CamelCase, why it was denied or failed. */
  reason?: string;
  /** How many values each detector, JSON path or column masked ("nulled": values made NULL). */
  masked?: Record<string, number>;
  /** A SQL statement (Postgres connections). */
  sql?: SqlStatementRecord;
  /** The human decision on a command the grant held for approval. */
  approval?: ApprovalRecord;
}

/**
 * How a held command was decided (forwarded only when Approved), or, in the operator's own
 * `approval` event, how the run itself was.
 */
export interface ApprovalRecord {
  /** The HeldCommand approvers decided (what `kubectl jit approve` named); absent for the run. */
  command?: string;
  decision: "Approved" | "Denied" | "Expired";
  /** Who decided and why, as the operator counted it. */
  message: string;
}

export const approvalDecisions = ["Approved", "Denied", "Expired"] as const;

/** What an event says of a SQL statement: never a constant, never a bind parameter. */
export interface SqlStatementRecord {
  /** As PostgreSQL tags it: SELECT, INSERT, CREATE TABLE… */
  command: string;
  /** The grant's action it needed; absent for plumbing (BEGIN, SET…) and forbidden statements. */
  action?: "read" | "write" | "ddl" | "admin";
  /** The query with every constant replaced by $n (libpg-query's normalize). */
  statement: string;
  /** libpg-query's fingerprint: the same for every query of the same shape. */
  fingerprint: string;
  /** Relations it names. */
  tables?: string[];
  /** Rows returned or affected (CommandComplete), when it completed. */
  rows?: number;
  /** The SQLSTATE the server answered with, when it failed. */
  error?: string;
}

/** Bounds the operator holds a statement record to. */
/** The longest connection, method, path, rule or reason an event holds: the sidecar cuts a
 * longer path (the graph chooses it), the operator refuses anything longer. */
export const maxEventTextLength = 2048;
export const maxSqlStatementLength = 2048;
export const maxSqlTables = 32;

export interface SessionEvent extends SessionRecord {
  schema: typeof sessionEventSchemaVersion;
  run: { namespace: string; name: string; uid: string };
  /**
   * Per run, the sidecar's from 1, without gaps: the operator deduplicates on (run uid, seq).
   * 0 is the operator's own: the run's approval decision, which no sidecar can send.
   */
  seq: number;
}

/** The body of POST credentialApi.events: consecutive events of one run, oldest first. */
export interface SessionEventsBatch {
  events: SessionEvent[];
}

/** The operator's answer: every event up to and including ackedThrough is stored. */
export interface SessionEventsAck {
  ackedThrough: number;
}

/** Most query parameter names an event keeps, and the longest one. */
export const maxQueryNames = 32;
export const maxQueryNameLength = 128;

/** The parameter names of a query string ("?a=1&b=2&a=3" -> ["a", "b"]), within the bounds. */
export function queryNames(query: string): string[] | undefined {
  if (query.length <= 1) return undefined;
  const names = new Set<string>();
  for (const name of new URLSearchParams(query).keys()) {
    if (names.size === maxQueryNames) break;
    names.add(name.slice(0, maxQueryNameLength));
  }
  return names.size > 0 ? [...names] : undefined;
}

/** Most events and bytes the sidecar sends at once (the operator refuses larger batches). */
export const maxEventsPerBatch = 500;
export const maxBatchBytes = 1024 * 1024;

/**
 * The operator serves stored sessions as an aggregated API (an APIService), so the API server
 * authenticates the reader and the operator authorizes them with a SubjectAccessReview.
 */
export const sessionsApi = {
  group: "sessions.langgraph-jit.dev",
  version: "v1alpha1",
  resource: "runsessions",
  kind: "RunSession",
  /** Most events in one answer; `continue` pages through the rest. */
  defaultLimit: 1000,
  maxLimit: 5000,
} as const;
export const sessionsApiVersion = `${sessionsApi.group}/${sessionsApi.version}`;

/** GET /apis/<group>/<version>/namespaces/<ns>/runsessions/<run>[?limit=N&continue=T] */
export interface RunSession {
  apiVersion: typeof sessionsApiVersion;
  kind: typeof sessionsApi.kind;
  metadata: { name: string; namespace: string };
  /** The run these events belong to: the live one, or the latest stored run of that name. */
  run: { uid: string; phase?: string };
  summary: { events: number; denied: number; masked: number };
  /** In sequence order, after the `continue` token the request carried. */
  events: SessionEvent[];
  /** Present when more events follow: pass it back as `?continue=`. */
  continue?: string;
}
