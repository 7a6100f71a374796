// Classifies SQL into the grant's actions with PostgreSQL's own parser (libpg-query): the
// statement's type gives its action, and every node inside it (a data-modifying CTE, a locking
// clause, a function call) can only raise it. What is not recognised counts as admin. The table
// is docs/adr/0006-postgres-data-path.md; each row has a test in statement-classifier.test.ts.
import { fingerprintSync, loadModule, normalizeSync, parseSync } from "libpg-query";
import { BoundedCache } from "../../../api/bounded-cache.ts";
import { errorMessage } from "../../../api/errors.ts";
import type { Action } from "../../../api/v1alpha1.ts";

/** The actions in the order of what they allow; a statement needs the highest it touches. */
export const actionOrder = ["read", "write", "ddl", "admin"] as const satisfies Action[];

/** A statement needs an action, is plumbing every session needs, or is never allowed. */
export type Requirement =
  | { kind: "action"; action: Action; why: string }
  | { kind: "plumbing" }
  | { kind: "forbidden"; why: string; reason?: string };

export interface ClassifiedStatement {
  /** The command as PostgreSQL would tag it: SELECT, INSERT, CREATE TABLE… */
  command: string;
  requirement: Requirement;
  /** Relations named (schema.table or table), at most maxTables. */
  tables: string[];
  /** A PREPARE's name, or an EXECUTE's: prepared statements share one namespace with Parse. */
  prepares?: string;
  executes?: string;
  /** DECLARE's cursor, FETCH's. */
  cursor?: string;
  fetches?: string;
  /** The statement whose result rows this one returns, for finding masked columns in it. */
  tree?: Node;
  /** COPY ... TO STDOUT: the columns in order, when the statement names them. */
  copyColumns?: string[];
  /** COPY ... TO STDOUT in other than the default text format (csv, binary, a delimiter). */
  copyFormatted?: boolean;
}

export interface ClassifiedQuery {
  statements: ClassifiedStatement[];
  /** Constants replaced by $n: what an event records instead of the SQL. */
  normalized: string;
  fingerprint: string;
}

export class SqlSyntaxError extends Error {
  override name = "SqlSyntaxError";
}

const maxTables = 32;

let loaded: Promise<void> | undefined;
/** Loads the parser's WASM module once; only a run with a Postgres connection pays for it. */
export function loadParser(): Promise<void> {
  loaded ??= loadModule();
  return loaded;
}

// Clients send the same text again and again (prepared and extended protocol, ORMs): parsing it
// once is enough. Keeping a bounded number of texts of bounded length stops a client that sends
// ever new SQL from growing the sidecar's memory; the least recently used text goes first.
const maxCachedQueries = 1024;
const maxCachedLength = 16 * 1024;
const cachedQueries = new BoundedCache<string, ClassifiedQuery>({ maxEntries: maxCachedQueries });

/** Parses and classifies one query string (one or more statements). Throws SqlSyntaxError. */
export function classifyQuery(sql: string): ClassifiedQuery {
  const cached = cachedQueries.get(sql);
  if (cached) return cached;
  const classified = classifyUncached(sql);
  if (sql.length <= maxCachedLength) cachedQueries.set(sql, classified);
  return classified;
}

function classifyUncached(sql: string): ClassifiedQuery {
  let tree: { stmts?: { stmt?: Node }[] };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch (error) {
    throw new SqlSyntaxError(errorMessage(error));
  }
  const statements = (tree.stmts ?? []).map(({ stmt }) => classifyStatement(stmt ?? {}));
  const text = normalized(sql);
  return { statements, normalized: text, fingerprint: fingerprintOf(sql, text) };
}

// Texts that differ only in constants share their normalized form and their fingerprint (which
// ignores constants): a statement sent with new values each time is fingerprinted once. Bounded
// as the classified texts are.
const fingerprints = new BoundedCache<string, string>({ maxEntries: maxCachedQueries });

function fingerprintOf(sql: string, normalizedText: string): string {
  const known = normalizedText ? fingerprints.get(normalizedText) : undefined;
  if (known) return known;
  const fingerprint = fingerprintSync(sql);
  if (normalizedText && normalizedText.length <= maxCachedLength) {
    fingerprints.set(normalizedText, fingerprint);
  }
  return fingerprint;
}

function normalized(sql: string): string {
  try {
    return normalizeSync(sql);
  } catch {
    return "";
  }
}

export type Node = Record<string, unknown>;

/** Statements whose result rows come from their own target or RETURNING list. */
const rowStatements = new Set([
  "SelectStmt",
  "InsertStmt",
  "UpdateStmt",
  "DeleteStmt",
  "MergeStmt",
]);

/** Statement types by the action they need; anything absent needs admin. */
const statementActions: Record<string, Action | "plumbing"> = {
  SelectStmt: "read",
  VariableShowStmt: "read",
  FetchStmt: "plumbing",
  ClosePortalStmt: "plumbing",
  TransactionStmt: "plumbing",
  VariableSetStmt: "plumbing",
  DeallocateStmt: "plumbing",
  DiscardStmt: "plumbing",
  ListenStmt: "plumbing",
  UnlistenStmt: "plumbing",
  ConstraintsSetStmt: "plumbing",
  InsertStmt: "write",
  UpdateStmt: "write",
  DeleteStmt: "write",
  MergeStmt: "write",
  LockStmt: "write",
  NotifyStmt: "write",
  CreateStmt: "ddl",
  CreateTableAsStmt: "ddl",
  AlterTableStmt: "ddl",
  DropStmt: "ddl",
  TruncateStmt: "ddl",
  CommentStmt: "ddl",
  IndexStmt: "ddl",
  ViewStmt: "ddl",
  CreateSeqStmt: "ddl",
  AlterSeqStmt: "ddl",
  RenameStmt: "ddl",
  CreateSchemaStmt: "ddl",
  CreateFunctionStmt: "ddl",
  AlterFunctionStmt: "ddl",
  CreateTrigStmt: "ddl",
  RuleStmt: "ddl",
  CreateEnumStmt: "ddl",
  AlterEnumStmt: "ddl",
  CompositeTypeStmt: "ddl",
  CreateRangeStmt: "ddl",
  DefineStmt: "ddl",
  CreateDomainStmt: "ddl",
  AlterDomainStmt: "ddl",
  AlterObjectSchemaStmt: "ddl",
  RefreshMatViewStmt: "ddl",
  CreateStatsStmt: "ddl",
  AlterStatsStmt: "ddl",
  ReindexStmt: "ddl",
  ClusterStmt: "ddl",
  VacuumStmt: "ddl",
  AlterTypeStmt: "ddl",
};

/** Commands as PostgreSQL tags them, for the statement types whose name does not say it. */
const commandNames: Record<string, string> = {
  SelectStmt: "SELECT",
  InsertStmt: "INSERT",
  UpdateStmt: "UPDATE",
  DeleteStmt: "DELETE",
  MergeStmt: "MERGE",
  VariableShowStmt: "SHOW",
  VariableSetStmt: "SET",
  TransactionStmt: "TRANSACTION",
  CopyStmt: "COPY",
  ExplainStmt: "EXPLAIN",
  DoStmt: "DO",
  CallStmt: "CALL",
  PrepareStmt: "PREPARE",
  ExecuteStmt: "EXECUTE",
  DeallocateStmt: "DEALLOCATE",
  DeclareCursorStmt: "DECLARE CURSOR",
  FetchStmt: "FETCH",
  ClosePortalStmt: "CLOSE CURSOR",
  CreateStmt: "CREATE TABLE",
  CreateTableAsStmt: "CREATE TABLE AS",
  AlterTableStmt: "ALTER TABLE",
  DropStmt: "DROP",
  TruncateStmt: "TRUNCATE",
  IndexStmt: "CREATE INDEX",
  ViewStmt: "CREATE VIEW",
  GrantStmt: "GRANT",
  GrantRoleStmt: "GRANT ROLE",
  CreateRoleStmt: "CREATE ROLE",
  AlterRoleStmt: "ALTER ROLE",
  DropRoleStmt: "DROP ROLE",
  AlterSystemStmt: "ALTER SYSTEM",
  LockStmt: "LOCK TABLE",
  ListenStmt: "LISTEN",
  UnlistenStmt: "UNLISTEN",
  NotifyStmt: "NOTIFY",
  DiscardStmt: "DISCARD",
};

/**
 * Functions known not to write or change the session, by name (pg_catalog's own; a qualified
 * name in another schema is somebody's function and counts as admin).
 */
const readOnlyFunctions = new Set(
  `abs acos array_agg array_append array_cat array_length array_lower array_position
  array_positions array_prepend array_remove array_replace array_to_json array_to_string array_upper
  ascii asin atan atan2 avg bit_and bit_length bit_or bool_and bool_or btrim cardinality cbrt ceil
  ceiling char_length character_length chr clock_timestamp coalesce concat concat_ws corr cos
  count cume_dist current_database current_schema current_schemas current_setting current_user
  date_bin date_part date_trunc decode degrees dense_rank div encode every exp extract
  first_value floor format format_type gen_random_uuid generate_series generate_subscripts
  greatest has_column_privilege has_database_privilege has_schema_privilege has_table_privilege
  initcap isfinite json_agg json_array_elements json_array_elements_text json_array_length
  json_build_array json_build_object json_each json_each_text json_extract_path
  json_extract_path_text json_object json_object_agg json_object_keys json_populate_record
  json_strip_nulls json_typeof jsonb_agg jsonb_array_elements jsonb_array_elements_text
  jsonb_array_length jsonb_build_array jsonb_build_object jsonb_each jsonb_each_text
  jsonb_extract_path jsonb_extract_path_text jsonb_insert jsonb_object jsonb_object_agg
  jsonb_object_keys jsonb_path_exists jsonb_path_match jsonb_path_query jsonb_path_query_array
  jsonb_path_query_first jsonb_populate_record jsonb_pretty jsonb_set jsonb_set_lax
  jsonb_strip_nulls jsonb_to_record jsonb_to_recordset jsonb_typeof justify_days justify_hours
  justify_interval lag last_value lead least left length ln localtime localtimestamp log log10
  lower lpad ltrim make_date make_interval make_time make_timestamp make_timestamptz max md5 min
  mod now nth_value ntile nullif num_nonnulls num_nulls octet_length overlay percent_rank
  percentile_cont percentile_disc pg_backend_pid pg_column_size pg_get_constraintdef
  pg_get_expr pg_get_indexdef pg_get_viewdef pg_is_in_recovery pg_postmaster_start_time
  pg_relation_size pg_sleep pg_table_is_visible pg_total_relation_size pg_typeof pi position
  power quote_ident quote_literal quote_nullable radians random rank regexp_count regexp_instr
  regexp_like regexp_match regexp_matches regexp_replace regexp_split_to_array
  regexp_split_to_table repeat replace reverse right round row_number row_to_json rpad rtrim
  scale sha224 sha256 sha384 sha512 sign sin split_part sqrt starts_with statement_timestamp
  stddev stddev_pop stddev_samp string_agg string_to_array strpos substr substring sum tan
  timeofday timezone to_char to_date to_hex to_json to_jsonb to_number to_timestamp
  transaction_timestamp translate trim trunc unnest upper uuid_generate_v4 var_pop var_samp
  variance version websearch_to_tsquery to_tsvector to_tsquery plainto_tsquery ts_rank
  ts_headline phraseto_tsquery array_dims`.split(/\s+/),
);

/** Functions that write (sequences, notifications) rather than only read. */
const writingFunctions = new Set(["nextval", "setval", "pg_notify"]);
/** Settings that would change who the session is. */
const identitySettings = new Set(["role", "session_authorization"]);
/**
 * Settings that change how the server reads SQL text, with the only values the sidecar's parser
 * reads alike: another client encoding or backslash-escaped quotes would let the server see
 * other statements than the ones classified.
 */
const parsingSettings: Record<string, readonly string[]> = {
  client_encoding: ["utf8", "utf-8", "unicode"],
  standard_conforming_strings: ["on", "true", "yes", "1"],
};

export function classifyStatement(statement: Node): ClassifiedStatement {
  const type = Object.keys(statement)[0] ?? "";
  const node = (statement[type] ?? {}) as Node;
  const tables: string[] = [];
  const result: ClassifiedStatement = {
    command: commandNames[type] ?? commandOf(type),
    requirement: topLevel(type, node),
    tables,
  };
  if (type === "PrepareStmt") result.prepares = String(node.name ?? "");
  if (type === "ExecuteStmt") result.executes = String(node.name ?? "");
  if (type === "DeclareCursorStmt") result.cursor = String(node.portalname ?? "");
  if (type === "FetchStmt") result.fetches = String(node.portalname ?? "");
  const returnsRowsOf =
    type === "DeclareCursorStmt" || type === "CopyStmt" ? node.query : statement;
  if (returnsRowsOf && rowStatements.has(Object.keys(returnsRowsOf)[0] ?? ""))
    result.tree = returnsRowsOf as Node;
  if (type === "CopyStmt" && !node.is_from) {
    const columns = copyColumns(node);
    if (columns) result.copyColumns = columns;
    const options = Array.isArray(node.options) ? (node.options as Node[]) : [];
    result.copyFormatted = options.some((option) => {
      const element = option.DefElem as Node | undefined;
      const name = String(element?.defname ?? "").toLowerCase();
      const value = constantString(element?.arg as Node | undefined)?.toLowerCase();
      return name === "delimiter" || (name === "format" && value !== "text");
    });
  }
  // Everything inside can only raise what the statement needs.
  const walked = walk(type === "PrepareStmt" || type === "ExplainStmt" ? {} : node, tables);
  result.requirement = raise(result.requirement, walked);
  if (type === "ExplainStmt") {
    const inner = classifyStatement((node.query ?? {}) as Node);
    tables.push(...inner.tables);
    result.requirement = explainRequirement(node, inner.requirement);
  }
  if (type === "PrepareStmt") {
    const inner = classifyStatement((node.query ?? {}) as Node);
    tables.push(...inner.tables);
    result.requirement = raise(result.requirement, inner.requirement);
  }
  result.tables = [...new Set(tables)].slice(0, maxTables);
  return result;
}

function commandOf(type: string): string {
  return type
    .replace(/Stmt$/, "")
    .replace(/([a-z])([A-Z])/g, "$1 $2")
    .toUpperCase();
}

function topLevel(type: string, node: Node): Requirement {
  switch (type) {
    case "VariableSetStmt":
      return setRequirement(node);
    case "CopyStmt":
      return copyRequirement(node);
    case "DoStmt":
      return action("admin", "a DO block can run any statement");
    case "CallStmt":
      return action("admin", "a procedure can run any statement");
    case "ExecuteStmt":
    case "PrepareStmt":
    case "ExplainStmt":
    case "DeclareCursorStmt":
      return { kind: "plumbing" };
    case "SelectStmt":
      if (node.intoClause) return action("ddl", "SELECT INTO creates a table");
      if (Array.isArray(node.lockingClause) && node.lockingClause.length > 0)
        return action("write", "SELECT with a locking clause locks rows for writing");
      return action("read", "SELECT");
  }
  const mapped = statementActions[type];
  if (mapped === "plumbing") return { kind: "plumbing" };
  if (mapped) return action(mapped, commandNames[type] ?? commandOf(type));
  return action("admin", `${commandNames[type] ?? commandOf(type)} is not a data statement`);
}

function action(needed: Action, why: string): Requirement {
  return { kind: "action", action: needed, why };
}

/** The stricter of two requirements: forbidden over any action, a higher action over a lower. */
export function raise(a: Requirement, b: Requirement): Requirement {
  if (a.kind === "forbidden") return a;
  if (b.kind === "forbidden") return b;
  if (b.kind === "plumbing") return a;
  if (a.kind === "plumbing") return b;
  return actionOrder.indexOf(b.action) > actionOrder.indexOf(a.action) ? b : a;
}

function setRequirement(node: Node): Requirement {
  const name = String(node.name ?? "").toLowerCase();
  const kind = String(node.kind ?? "");
  const resets = kind === "VAR_RESET" || kind === "VAR_RESET_ALL";
  if (identitySettings.has(name) && !resets)
    return { kind: "forbidden", why: `SET ${name.toUpperCase()} would change who the session is` };
  const allowed = parsingSettings[name];
  if (allowed && !resets) {
    const values = Array.isArray(node.args)
      ? node.args.map((arg) => settingValue(arg as Node))
      : [];
    if (values.length !== 1 || !allowed.includes(String(values[0]).toLowerCase()))
      return {
        kind: "forbidden",
        why: `${name} other than ${allowed[0]} would make the server read SQL differently`,
      };
  }
  if (name === "search_path" && !resets && !searchPathKeepsCatalogFirst(node.args))
    return action(
      "admin",
      "a search_path with pg_catalog after another schema can shadow built-in functions",
    );
  return { kind: "plumbing" };
}

/** pg_catalog is searched first unless a search_path names it after another schema. */
function searchPathKeepsCatalogFirst(args: unknown): boolean {
  if (!Array.isArray(args)) return true;
  const schemas = args.map((arg) => constantString(arg as Node)?.toLowerCase());
  const catalog = schemas.indexOf("pg_catalog");
  return catalog <= 0 && !schemas.includes(undefined);
}

function copyRequirement(node: Node): Requirement {
  if (node.filename || node.is_program)
    return {
      kind: "forbidden",
      why: "COPY to or from a file or program runs on the database server",
    };
  if (node.is_from) return action("write", "COPY FROM STDIN");
  return action("read", "COPY TO STDOUT");
}

function explainRequirement(node: Node, inner: Requirement): Requirement {
  const options = Array.isArray(node.options) ? (node.options as Node[]) : [];
  const analyze = options.some((option) => {
    const element = option.DefElem as Node | undefined;
    if (String(element?.defname).toLowerCase() !== "analyze") return false;
    const value = constantString({ A_Const: element?.arg } as Node) ?? booleanOf(element?.arg);
    return value === undefined || !["false", "off", "0"].includes(String(value).toLowerCase());
  });
  // EXPLAIN without ANALYZE plans and never runs; with ANALYZE it runs the statement.
  if (analyze) return raise(action("read", "EXPLAIN ANALYZE"), inner);
  if (inner.kind === "forbidden") return inner;
  return action("read", "EXPLAIN");
}

function booleanOf(value: unknown): string | undefined {
  const node = value as Node | undefined;
  if (!node) return undefined;
  const boolean = (node.Boolean as Node | undefined)?.boolval;
  if (node.Boolean) return boolean ? "true" : "false";
  const string = (node.String as Node | undefined)?.sval;
  return typeof string === "string" ? string : undefined;
}

/** A SET value: a string, a keyword (on) or a number. */
function settingValue(node: Node): string | undefined {
  const constant = (node.A_Const ?? node) as Node;
  const integer = (constant.ival as Node | undefined)?.ival;
  if (constant.ival !== undefined) return String(integer ?? 0);
  return constantString(node);
}

function constantString(node: Node | undefined): string | undefined {
  const constant = (node?.A_Const ?? node) as Node | undefined;
  const sval = (constant?.sval as Node | undefined)?.sval;
  if (typeof sval === "string") return sval;
  const string = (node?.String as Node | undefined)?.sval;
  return typeof string === "string" ? string : undefined;
}

/**
 * Walks every node under a statement, without recursion (the parser accepts expressions nested
 * thousands deep), collecting relations and the requirement nested statements and calls add.
 */
function walk(root: unknown, tables: string[]): Requirement {
  let requirement: Requirement = { kind: "plumbing" };
  const ctes = new Set<string>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (Array.isArray(value)) {
      for (const item of value) stack.push(item);
      continue;
    }
    if (typeof value !== "object" || value === null) continue;
    for (const [key, child] of Object.entries(value as Node)) {
      if (typeof child !== "object" || child === null) continue;
      const node = child as Node;
      if (typeof node.relname === "string")
        tables.push(node.schemaname ? `${node.schemaname}.${node.relname}` : node.relname);
      switch (key) {
        case "InsertStmt":
        case "UpdateStmt":
        case "DeleteStmt":
        case "MergeStmt":
          requirement = raise(
            requirement,
            action("write", `a data-modifying ${commandNames[key]}`),
          );
          break;
        case "SelectStmt":
          requirement = raise(requirement, topLevel(key, node));
          break;
        case "FuncCall":
          requirement = raise(requirement, functionRequirement(node));
          break;
        case "CommonTableExpr":
          ctes.add(String(node.ctename));
          break;
      }
      stack.push(child);
    }
  }
  // A WITH query's name is not a relation of the database.
  const named = tables.filter((table) => !ctes.has(table));
  tables.splice(0, tables.length, ...named);
  return requirement;
}

function functionRequirement(call: Node): Requirement {
  const parts = (Array.isArray(call.funcname) ? call.funcname : []).map((part) =>
    constantString(part as Node)?.toLowerCase(),
  );
  const name = parts.at(-1) ?? "";
  const schema = parts.length > 1 ? parts[0] : "pg_catalog";
  const qualified = parts.join(".");
  if (schema !== "pg_catalog" || parts.length > 2 || parts.includes(undefined))
    return action("admin", `${qualified}() is not a built-in function known to be read-only`);
  if (name === "set_config") return setConfigRequirement(call);
  if (writingFunctions.has(name)) return action("write", `${name}() writes`);
  if (readOnlyFunctions.has(name)) return { kind: "plumbing" };
  return action("admin", `${qualified}() is not a function known to be read-only`);
}

function setConfigRequirement(call: Node): Requirement {
  const args = Array.isArray(call.args) ? (call.args as Node[]) : [];
  const name = constantString(args[0])?.toLowerCase();
  if (name === undefined || identitySettings.has(name))
    return {
      kind: "forbidden",
      why: "set_config() of the role or session authorization (or of a setting named at run time)",
    };
  const allowed = parsingSettings[name];
  if (allowed) {
    const value = constantString(args[1])?.toLowerCase();
    if (value === undefined || !allowed.includes(value))
      return {
        kind: "forbidden",
        why: `${name} other than ${allowed[0]} would make the server read SQL differently`,
      };
  }
  if (name === "search_path") {
    const value = constantString(args[1]);
    const keepsCatalog =
      value !== undefined &&
      searchPathKeepsCatalogFirst(
        value
          .split(",")
          .map((schema) => ({ String: { sval: schema.trim().replace(/^"|"$/g, "") } })),
      );
    return keepsCatalog
      ? { kind: "plumbing" }
      : action(
          "admin",
          "a search_path with pg_catalog after another schema can shadow built-in functions",
        );
  }
  return { kind: "plumbing" };
}

/** A COPY's columns: its column list, or its query's output names when none is a star. */
function copyColumns(copy: Node): string[] | undefined {
  if (Array.isArray(copy.attlist) && copy.attlist.length > 0)
    return (copy.attlist as Node[]).map((column) => constantString(column) ?? "");
  const query = (copy.query as Node | undefined)?.SelectStmt as Node | undefined;
  if (!query || !Array.isArray(query.targetList)) return undefined;
  const names: string[] = [];
  for (const target of query.targetList as Node[]) {
    const entry = target.ResTarget as Node;
    if (typeof entry.name === "string") {
      names.push(entry.name);
      continue;
    }
    const reference = (entry.val as Node | undefined)?.ColumnRef as Node | undefined;
    const fields = Array.isArray(reference?.fields) ? (reference.fields as Node[]) : [];
    const last = fields.at(-1);
    if (!last || last.A_Star) return undefined;
    names.push(constantString(last) ?? "?column?");
  }
  return names;
}
