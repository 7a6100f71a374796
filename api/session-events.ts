// The session event schema shared by the sidecar (which records) and the operator (which
// stores and serves): one event per request, denial, tunnel or credential change on a run's
// connections. No credential and no masked value ever appears in an event.

export const sessionEventSchemaVersion = 1;

export const sessionEventKinds = [
  "request",
  "denied",
  "masked",
  "tunnel",
  "credential-refresh",
  "error",
] as const;
export type SessionEventKind = (typeof sessionEventKinds)[number];

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
  /** How many values each detector or JSON path masked. */
  masked?: Record<string, number>;
}

export interface SessionEvent extends SessionRecord {
  schema: typeof sessionEventSchemaVersion;
  run: { namespace: string; name: string; uid: string };
  /** Per run, from 1, without gaps: the operator deduplicates on (run uid, seq). */
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
