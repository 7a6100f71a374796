// Checks a sidecar's batch of session events before anything is stored: every event must be of
// the schema, of the run the JWT names, and within bounds. A bad batch is refused whole, with
// the index and field that were wrong.
import { errorMessage } from "../../../api/errors.ts";
import {
  approvalDecisions,
  maxEventsPerBatch,
  maxEventTextLength,
  maxQueryNameLength,
  maxQueryNames,
  maxSqlStatementLength,
  maxSqlTables,
  type SessionEvent,
  sessionEventKinds,
  sessionEventSchemaVersion,
} from "../../../api/session-events.ts";
import { HttpError } from "../server/https-server.ts";

// What a sidecar's clock may be ahead of the operator's: a later time is not a recording.
const maxClockAheadMs = 3_600_000;
// The one spelling the sidecar writes (Date.toISOString): SQLite orders times as text, and an
// offset such as +14:00 would sort an older event after newer ones.
const utcTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const optionalStrings = ["connection", "method", "path", "rule", "reason"] as const;
const optionalNumbers = ["status", "bytesIn", "bytesOut", "durationMs"] as const;
const kinds = new Set<string>(sessionEventKinds);

export function parseEventsBatch(
  text: string,
  run: { namespace: string; name: string; uid: string },
): SessionEvent[] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw bad(`the body is not JSON: ${errorMessage(error)}`);
  }
  const events = (body as { events?: unknown } | null)?.events;
  if (!Array.isArray(events) || events.length === 0 || events.length > maxEventsPerBatch) {
    throw bad(`the body must be {"events": [...]} with 1 to ${maxEventsPerBatch} events`);
  }
  const checked = events.map((event, index) => checkEvent(event, index, run, Date.now()));
  // First come is stored (run, seq), so a batch may not hold one seq twice or out of order.
  for (const [index, event] of checked.entries()) {
    const previous = checked[index - 1];
    if (previous && event.seq <= previous.seq) {
      throw bad(`events[${index}].seq must be greater than events[${index - 1}].seq`);
    }
  }
  return checked;
}

// Text the graph shapes (paths, SQL identifiers) may hold control characters: they are stored
// as sent, since refusing them would let a graph stop its own session from being shipped, and
// `kubectl jit logs` escapes them.
function isText(value: unknown, max: number): value is string {
  return typeof value === "string" && value.length <= max;
}

function checkEvent(
  value: unknown,
  index: number,
  run: { namespace: string; name: string; uid: string },
  now: number,
): SessionEvent {
  const at = (field: string) => `events[${index}].${field}`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad(`events[${index}] is not an object`);
  }
  const event = value as Record<string, unknown>;
  if (event.schema !== sessionEventSchemaVersion) {
    throw bad(`${at("schema")} must be ${sessionEventSchemaVersion}`);
  }
  const eventRun = event.run as Record<string, unknown> | undefined;
  if (
    eventRun?.uid !== run.uid ||
    eventRun?.namespace !== run.namespace ||
    eventRun?.name !== run.name
  ) {
    throw bad(
      `${at("run")} is not the run the token was issued for (${run.namespace}/${run.name})`,
    );
  }
  if (typeof event.seq !== "number" || !Number.isSafeInteger(event.seq) || event.seq < 1) {
    throw bad(`${at("seq")} must be a positive integer`);
  }
  if (
    typeof event.time !== "string" ||
    !utcTime.test(event.time) ||
    Number.isNaN(Date.parse(event.time))
  ) {
    throw bad(`${at("time")} must be a UTC time such as 2026-12-05T12:00:00.000Z`);
  }
  if (Date.parse(event.time) > now + maxClockAheadMs) {
    throw bad(`${at("time")} is more than an hour ahead of the operator's clock`);
  }
  if (typeof event.kind !== "string" || !kinds.has(event.kind)) {
    throw bad(`${at("kind")} must be one of ${sessionEventKinds.join(", ")}`);
  }
  for (const field of optionalStrings) {
    const text = event[field];
    if (text !== undefined && !isText(text, maxEventTextLength)) {
      throw bad(`${at(field)} must be a string of at most ${maxEventTextLength} characters`);
    }
  }
  const query = event.query;
  if (
    query !== undefined &&
    (!Array.isArray(query) ||
      query.length > maxQueryNames ||
      !query.every((name) => isText(name, maxQueryNameLength)))
  ) {
    throw bad(
      `${at("query")} must be at most ${maxQueryNames} parameter names of at most ${maxQueryNameLength} characters`,
    );
  }
  for (const field of optionalNumbers) {
    const number = event[field];
    if (
      number !== undefined &&
      (typeof number !== "number" || !Number.isFinite(number) || number < 0)
    ) {
      throw bad(`${at(field)} must be a non-negative number`);
    }
  }
  if (event.masked !== undefined) {
    const masked = event.masked as Record<string, unknown>;
    const entries = typeof masked === "object" && masked !== null ? Object.entries(masked) : [];
    const valid =
      entries.length <= 32 &&
      entries.every(
        ([name, count]) =>
          isText(name, 128) && Number.isSafeInteger(count) && (count as number) >= 0,
      );
    if (!valid || Array.isArray(masked) || typeof masked !== "object" || masked === null) {
      throw bad(`${at("masked")} must map at most 32 names to counts`);
    }
  }
  if (event.sql !== undefined) checkSql(event.sql, at("sql"));
  if (event.approval !== undefined) checkApproval(event.approval, at("approval"));
  const known = new Set([
    "sql",
    "approval",
    "schema",
    "run",
    "seq",
    "time",
    "kind",
    "masked",
    "query",
    ...optionalStrings,
    ...optionalNumbers,
  ]);
  const unknown = Object.keys(event).find((field) => !known.has(field));
  if (unknown) throw bad(`${at(unknown)} is not a field of schema ${sessionEventSchemaVersion}`);
  return {
    ...(event as unknown as SessionEvent),
    run: { namespace: run.namespace, name: run.name, uid: run.uid },
  };
}

const sqlActions = new Set(["read", "write", "ddl", "admin"]);

function checkSql(value: unknown, at: string): void {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw bad(`${at} must be an object`);
  const sql = value as Record<string, unknown>;
  const text = (field: string, max: number, required: boolean) => {
    const item = sql[field];
    if (item === undefined && !required) return;
    if (!isText(item, max))
      throw bad(`${at}.${field} must be a string of at most ${max} characters`);
  };
  text("command", 64, true);
  text("statement", maxSqlStatementLength, true);
  text("fingerprint", 64, true);
  text("error", 5, false);
  if (sql.action !== undefined && !sqlActions.has(sql.action as string))
    throw bad(`${at}.action must be one of read, write, ddl, admin`);
  if (
    sql.tables !== undefined &&
    (!Array.isArray(sql.tables) ||
      sql.tables.length > maxSqlTables ||
      !sql.tables.every((table) => isText(table, 256)))
  )
    throw bad(`${at}.tables must be at most ${maxSqlTables} names of at most 256 characters`);
  if (sql.rows !== undefined && (!Number.isSafeInteger(sql.rows) || (sql.rows as number) < 0))
    throw bad(`${at}.rows must be a non-negative integer`);
  const unknown = Object.keys(sql).find(
    (field) =>
      !["command", "action", "statement", "fingerprint", "tables", "rows", "error"].includes(field),
  );
  if (unknown) throw bad(`${at}.${unknown} is not a field of a SQL statement record`);
}

const decisions = new Set<string>(approvalDecisions);

function checkApproval(value: unknown, at: string): void {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw bad(`${at} must be an object`);
  const approval = value as Record<string, unknown>;
  if (!isText(approval.command, 253) || approval.command === "")
    throw bad(`${at}.command must be a HeldCommand's name`);
  if (!decisions.has(approval.decision as string))
    throw bad(`${at}.decision must be one of ${approvalDecisions.join(", ")}`);
  if (!isText(approval.message, maxEventTextLength))
    throw bad(`${at}.message must be a string of at most ${maxEventTextLength} characters`);
  const unknown = Object.keys(approval).find(
    (field) => !["command", "decision", "message"].includes(field),
  );
  if (unknown) throw bad(`${at}.${unknown} is not a field of an approval record`);
}

function bad(message: string): HttpError {
  return new HttpError(400, "BadRequest", `session events refused: ${message}`);
}
