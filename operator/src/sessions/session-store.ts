// Where the operator keeps every run's session events, behind one interface with two backends:
// SQLite in a file (one replica) and PostgreSQL (any number of replicas). Both key events by
// (run uid, seq), so a batch sent twice is stored once.
import type {
  ApprovalRecord,
  SessionEvent,
  SqlStatementRecord,
} from "../../../api/session-events.ts";

export interface SessionSummary {
  /** Events stored for the run. */
  events: number;
  denied: number;
  /** Events in which something was masked. */
  masked: number;
}

export interface ListOptions {
  /** Only events with a greater sequence number. */
  afterSeq?: number;
  limit?: number;
}

export interface SessionStore {
  /** Stores the events (all of one run) once each; a seq already stored is left as it is. */
  ingest(events: SessionEvent[]): Promise<void>;
  /** The run's events in sequence order. */
  list(runUid: string, options?: ListOptions): Promise<SessionEvent[]>;
  summary(runUid: string): Promise<SessionSummary>;
  /** The uid of the latest run of that name with stored events (runs outlive their objects). */
  latestRun(namespace: string, name: string): Promise<string | undefined>;
  close(): Promise<void>;
}

/** The columns both backends store, in this order; the event is rebuilt from them. */
export const eventColumns = [
  "run_uid",
  "seq",
  "namespace",
  "name",
  "time",
  "kind",
  "connection",
  "method",
  "path",
  "query",
  "status",
  "bytes_in",
  "bytes_out",
  "duration_ms",
  "rule",
  "reason",
  "masked",
  "sql",
  "approval",
] as const;

export type EventRow = Record<(typeof eventColumns)[number], string | number | null>;

export function rowOf(event: SessionEvent): EventRow {
  return {
    run_uid: event.run.uid,
    seq: event.seq,
    namespace: event.run.namespace,
    name: event.run.name,
    time: event.time,
    kind: event.kind,
    connection: event.connection ?? null,
    method: event.method ?? null,
    path: event.path ?? null,
    query: event.query ? JSON.stringify(event.query) : null,
    status: event.status ?? null,
    bytes_in: event.bytesIn ?? null,
    bytes_out: event.bytesOut ?? null,
    duration_ms: event.durationMs ?? null,
    rule: event.rule ?? null,
    reason: event.reason ?? null,
    masked: event.masked ? JSON.stringify(event.masked) : null,
    sql: event.sql ? JSON.stringify(event.sql) : null,
    approval: event.approval ? JSON.stringify(event.approval) : null,
  };
}

export function eventOf(row: EventRow): SessionEvent {
  const optional = <T>(value: T | null) => (value === null ? undefined : value);
  const event: SessionEvent = {
    schema: 1,
    run: { namespace: String(row.namespace), name: String(row.name), uid: String(row.run_uid) },
    seq: Number(row.seq),
    time: String(row.time),
    kind: String(row.kind) as SessionEvent["kind"],
    connection: optional(row.connection as string | null),
    method: optional(row.method as string | null),
    path: optional(row.path as string | null),
    query: row.query === null ? undefined : (JSON.parse(String(row.query)) as string[]),
    status: optional(row.status === null ? null : Number(row.status)),
    bytesIn: optional(row.bytes_in === null ? null : Number(row.bytes_in)),
    bytesOut: optional(row.bytes_out === null ? null : Number(row.bytes_out)),
    durationMs: optional(row.duration_ms === null ? null : Number(row.duration_ms)),
    rule: optional(row.rule as string | null),
    reason: optional(row.reason as string | null),
    masked:
      row.masked === null ? undefined : (JSON.parse(String(row.masked)) as Record<string, number>),
    sql: row.sql === null ? undefined : (JSON.parse(String(row.sql)) as SqlStatementRecord),
    approval:
      row.approval === null ? undefined : (JSON.parse(String(row.approval)) as ApprovalRecord),
  };
  // Absent fields stay absent, as the sidecar sent them.
  return Object.fromEntries(
    Object.entries(event).filter(([, value]) => value !== undefined),
  ) as SessionEvent;
}
