// A run's session as a readable timeline: one aligned row per event, oldest first, under a
// line that names the run and its counts. Values were never recorded, so none can appear here.
import type { RunSession, SessionEvent } from "../../api/session-events.ts";

const columns = [
  "TIME",
  "SEQ",
  "CONNECTION",
  "EVENT",
  "REQUEST",
  "STATUS",
  "IN",
  "OUT",
  "DURATION",
];

function bytes(value: number | undefined): string {
  if (value === undefined) return "-";
  if (value < 1024) return `${value}B`;
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(1)}KiB`;
  return `${(value / 1024 / 1024).toFixed(1)}MiB`;
}

/**
 * Why it was allowed or refused, how a held command was decided, and what was masked, e.g.
 * "rule read; masked email×2".
 */
function detail(event: SessionEvent): string {
  const parts: string[] = [];
  if (event.sql?.action) parts.push(event.sql.action);
  if (event.sql?.tables) parts.push(`tables ${event.sql.tables.join(",")}`);
  if (event.rule) parts.push(`rule ${event.rule}`);
  if (event.reason) parts.push(event.reason);
  if (event.approval) {
    const { command, decision, message } = event.approval;
    parts.push(command ? `held as ${command}, ${decision}: ${message}` : `${decision}: ${message}`);
  }
  const masked = Object.entries(event.masked ?? {});
  if (masked.length > 0) {
    parts.push(`masked ${masked.map(([what, count]) => `${what}×${count}`).join(" ")}`);
  }
  return parts.join("; ");
}

/** The longest SQL shown in a row; `-o json` has all of it. */
const maxStatementWidth = 80;

/**
 * "GET /v1/docs?export&page": the query's parameter names, as recorded (never values); for SQL
 * the normalized statement on one line ("SELECT title FROM docs WHERE id = $1").
 */
function request(event: SessionEvent): string {
  if (event.sql) {
    const statement = event.sql.statement.replace(/\s+/g, " ").trim() || event.sql.command;
    return statement.length > maxStatementWidth
      ? `${statement.slice(0, maxStatementWidth - 1)}…`
      : statement;
  }
  const path = event.path && event.query ? `${event.path}?${event.query.join("&")}` : event.path;
  return [event.method, path].filter(Boolean).join(" ") || "-";
}

/** HTTP: the status; SQL: the rows, or the SQLSTATE it failed with. */
function status(event: SessionEvent): string {
  if (event.sql?.error) return event.sql.error;
  if (event.sql?.rows !== undefined) return `${event.sql.rows} rows`;
  return event.status === undefined ? "-" : String(event.status);
}

/** A stored value as it may be shown on a terminal: control characters escaped as \u{..}. */
function printable(cell: string): string {
  return cell.replace(/\p{Cc}/gu, (char) => `\\u{${char.charCodeAt(0).toString(16)}}`);
}

function row(event: SessionEvent): string[] {
  const cells = [
    event.time,
    String(event.seq),
    event.connection ?? "-",
    event.kind,
    request(event),
    status(event),
    bytes(event.bytesIn),
    bytes(event.bytesOut),
    event.durationMs === undefined ? "-" : `${event.durationMs.toFixed(1)}ms`,
    detail(event),
  ];
  return cells.map(printable);
}

export function heading(session: RunSession): string {
  const { metadata, run, summary } = session;
  const phase = run.phase ?? "object deleted";
  return `Run ${metadata.namespace}/${metadata.name} (uid ${run.uid}, ${phase}): ${summary.events} events, ${summary.denied} denied, ${summary.masked} masked`;
}

export function timeline(session: RunSession, events: SessionEvent[]): string {
  if (events.length === 0) return `${heading(session)}\nNo events recorded.\n`;
  const rows = [[...columns, "DETAIL"], ...events.map(row)];
  const widths = columns.map((_, i) => Math.max(...rows.map((r) => r[i]?.length ?? 0)));
  const lines = rows.map((r) =>
    r
      .map((cell, i) => (i < widths.length ? cell.padEnd(widths[i] ?? 0) : cell))
      .join("  ")
      .trimEnd(),
  );
  return `${heading(session)}\n${lines.join("\n")}\n`;
}
