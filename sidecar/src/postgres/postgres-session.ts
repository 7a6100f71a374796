// One graph connection to a Postgres listener: the startup answered by the sidecar, one upstream
// session logged in with the run's credential, and every message between them relayed in order.
// Statements are classified before they are forwarded; a refused one is replaced by a DO block
// that raises 42501, so PostgreSQL itself answers and keeps its protocol state exactly (an open
// transaction is aborted, the extended protocol skips to Sync). Results are masked row by row
// and each statement becomes one session event. A statement whose action the grant holds for
// approval waits, with nothing more of the graph's read, until approvers decide it.
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Socket } from "node:net";
import type { Logger } from "pino";
import {
  type GrantClaim,
  type HoldRequest,
  maxHeldStatementLength,
  type PostgresCredential,
} from "../../../api/credentials.ts";
import { errorMessage } from "../../../api/errors.ts";
import {
  type ApprovalRecord,
  maxSqlStatementLength,
  type SessionRecord,
  type SqlStatementRecord,
} from "../../../api/session-events.ts";
import {
  approvalRecord,
  bodyDigest,
  type CommandHolds,
  HoldFailed,
} from "../credentials/command-holds.ts";
import { hidesMaskedColumns } from "./column-references.ts";
import {
  CopyRowMasker,
  type MaskCounts,
  type Masking,
  maskingOf,
  RowMasker,
} from "./data-row-mask.ts";
import {
  authenticationOk,
  backendKeyData,
  bindMessage,
  commandTag,
  describeMessage,
  errorResponse,
  executeMessage,
  type Message,
  MessageReader,
  maxFrontendMessageBytes,
  maxStartupBytes,
  message,
  negotiateProtocolVersion,
  ProtocolViolation,
  parseFrontend,
  parseMessage,
  parseNoticeFields,
  parseRowDescription,
  parseStartup,
  queryMessage,
  readyForQuery,
  type StartupMessage,
  sslRefused,
  startupCodes,
} from "./protocol.ts";
import {
  type ClassifiedQuery,
  type ClassifiedStatement,
  classifyQuery,
  type Requirement,
  raise,
  SqlSyntaxError,
} from "./statement-classifier.ts";
import { openUpstream, UpstreamError, type UpstreamSession } from "./upstream.ts";

export interface PostgresTarget {
  credential: PostgresCredential;
  grant: GrantClaim;
}

/** The keys the sidecar hands to graph connections, and the upstream sessions they cancel. */
export class CancelKeys {
  readonly #sessions = new Map<number, { secret: Buffer; cancel: () => void }>();

  issue(cancel: () => void): { processId: number; secretKey: Buffer } {
    let processId: number;
    do processId = randomBytes(4).readInt32BE(0) & 0x7fffffff;
    while (processId === 0 || this.#sessions.has(processId));
    const secretKey = randomBytes(4);
    this.#sessions.set(processId, { secret: secretKey, cancel });
    return { processId, secretKey };
  }

  release(processId: number): void {
    this.#sessions.delete(processId);
  }

  /** Cancels the session the key names; a wrong key does nothing, as in PostgreSQL. */
  cancel(processId: number, secretKey: Buffer): boolean {
    const session = this.#sessions.get(processId);
    if (!session || session.secret.length !== secretKey.length) return false;
    if (!timingSafeEqual(session.secret, secretKey)) return false;
    session.cancel();
    return true;
  }
}

export interface PostgresSessionOptions {
  connection: string;
  run: string;
  /** Read per statement: a revoked or expired credential fails closed. */
  target: () => PostgresTarget | undefined;
  record: (record: SessionRecord) => void;
  canRecord: () => boolean;
  cancelKeys: CancelKeys;
  /** Sends a CancelRequest for an upstream session to the server. */
  cancelUpstream: (credential: PostgresCredential, key: UpstreamSession["backendKey"]) => void;
  /** Where statements the grant holds for approval wait for their decision. */
  holds?: Pick<CommandHolds, "decide">;
  logger: Logger;
}

/**
 * Startup parameters the graph may set; the rest (role, options, search_path…) are dropped, and
 * the client encoding is always UTF-8, the encoding the sidecar's parser reads.
 */
const passedParameters = new Set([
  "application_name",
  "datestyle",
  "timezone",
  "intervalstyle",
  "extra_float_digits",
  "statement_timeout",
  "lock_timeout",
  "idle_in_transaction_session_timeout",
  "default_transaction_isolation",
  "default_transaction_read_only",
  "bytea_output",
]);

/** What the sidecar knows of a prepared statement or portal. */
interface Prepared {
  classified: ClassifiedQuery;
  statement: ClassifiedStatement | undefined;
  hides: boolean;
  /** A portal's result masker, from its description. */
  masker?: RowMasker;
  /** Each execution waits for approval: what it needs, and the text approvers see. */
  held?: { requirement: HeldRequirement; text: string };
  /** A held portal's Bind: its parameters are part of what approvers approve. */
  bind?: Buffer;
}

type HeldRequirement = Extract<Requirement, { kind: "action" }>;

/** The stricter of two held requirements; the first may be none yet. */
function stricter(held: HeldRequirement | undefined, needs: HeldRequirement): HeldRequirement {
  return held ? (raise(held, needs) as HeldRequirement) : needs;
}

/** What a refused statement was, for its session event. */
interface Refused {
  classified: ClassifiedQuery;
  statement: ClassifiedStatement | undefined;
}

/** The server answers the messages forwarded to it in order; each waits here for its answer. */
type Expectation =
  | { kind: "query"; statements: RunningStatement[]; refusal?: boolean }
  | { kind: "parse" | "bind"; swallow: boolean }
  | { kind: "describe"; swallow: boolean; portal?: string }
  | { kind: "execute"; statement: RunningStatement; portal: string; refusal?: boolean }
  | { kind: "close" }
  | { kind: "sync" };

/** A statement on its way through the server: what its event will say. */
interface RunningStatement {
  classified: ClassifiedQuery;
  statement: ClassifiedStatement | undefined;
  hides: boolean;
  started: number;
  time: string;
  rows: number;
  masker?: RowMasker | CopyRowMasker;
  /** An Execute's portal, whose description (answered before its rows) holds the masker. */
  portal?: Prepared;
  /** How the command was decided, when the grant held it. */
  approval?: ApprovalRecord;
}

const unknownQuery: ClassifiedQuery = { statements: [], normalized: "", fingerprint: "" };

const refusalTag = `$lgjit_${randomBytes(6).toString("hex")}$`;

/**
 * A refusal of the sidecar's own, not the grant's: the event's reason, why (for the graph), the
 * SQLSTATE (default 42501) and, for a held statement, how it was decided.
 */
interface Refusal {
  reason: string;
  why: string;
  sqlState?: string;
  approval?: ApprovalRecord;
}

const heldThroughPrepare: Refusal = {
  reason: "ApprovalRequired",
  why: "runs a prepared statement whose action the grant holds for approval: send such statements as they run (Query, or Parse and Execute), so approvers see each one",
};

export class PostgresSession {
  readonly #options: PostgresSessionOptions;
  readonly #client: Socket;
  #upstream: UpstreamSession | undefined;
  #target: PostgresTarget | undefined;
  #masking: Masking | undefined;
  #cancelKey: number | undefined;
  readonly #expectations: Expectation[] = [];
  readonly #statements = new Map<string, Prepared>();
  readonly #portals = new Map<string, Prepared>();
  /** SQL-level prepared statements and cursors: what EXECUTE and FETCH read. */
  readonly #sqlPrepared = new Map<string, Requirement>();
  readonly #cursors = new Map<string, boolean>();
  #skipUntilSync = false;
  /** What the graph sent that waits behind a held command, in order. */
  readonly #backlog: Message[] = [];
  /** The held command's wait; while set, nothing more of the graph's is handled. */
  #holding: AbortController | undefined;
  #serverFull = false;
  #closed = false;
  /** The graph sent Terminate: the server's close that follows is the expected end. */
  #terminating = false;

  constructor(client: Socket, options: PostgresSessionOptions) {
    this.#client = client;
    this.#options = options;
    client.setNoDelay(true);
    client.on("error", () => this.close());
    client.on("close", () => this.close());
  }

  /** Answers the startup, logs in upstream, then relays until either side closes. */
  async start(): Promise<void> {
    let startup: StartupMessage;
    try {
      startup = await this.#readStartup();
    } catch (error) {
      this.#fatal(error);
      return;
    }
    if (startup.cancel) {
      this.#options.cancelKeys.cancel(startup.cancel.processId, startup.cancel.secretKey);
      this.#client.end();
      return;
    }
    const target = this.#options.target();
    if (!target) {
      this.#fatalMessage(
        "57P01",
        `connection "${this.#options.connection}": the run holds no credential for it (revoked or not issued yet)`,
      );
      return;
    }
    this.#target = target;
    this.#masking = maskingOf(target.grant);
    try {
      this.#upstream = await openUpstream(target.credential, this.#upstreamParameters(startup));
    } catch (error) {
      const upstreamError =
        error instanceof UpstreamError ? error : new UpstreamError(String(error));
      this.#fatalMessage(
        upstreamError.sqlState,
        `connection "${this.#options.connection}": ${upstreamError.message}`,
      );
      return;
    }
    if (this.#closed) {
      this.#upstream.socket.destroy();
      return;
    }
    const upstream = this.#upstream;
    // The graph's cancel ends a held statement's wait, or else the server's statement.
    const key = this.#options.cancelKeys.issue(() => {
      if (this.#holding) this.#holding.abort(new Error("canceled by the graph"));
      else this.#options.cancelUpstream(target.credential, upstream.backendKey);
    });
    this.#cancelKey = key.processId;
    this.#client.write(
      Buffer.concat([
        authenticationOk,
        ...upstream.parameterStatuses,
        ...upstream.notices,
        backendKeyData(key.processId, key.secretKey),
        readyForQuery(upstream.status as "I"),
      ]),
    );
    this.#relay(upstream);
  }

  /** Ends the session; with a reason, the graph's client gets it as a FATAL error first. */
  close(reason?: { sqlState: string; message: string }): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#cancelKey !== undefined) this.#options.cancelKeys.release(this.#cancelKey);
    this.#holding?.abort(new Error("the session ended"));
    if (reason)
      this.#options.logger.info(
        { connection: this.#options.connection, sqlState: reason.sqlState, reason: reason.message },
        "session ended with an error to the client",
      );
    if (reason && this.#client.writable)
      this.#client.end(errorResponse({ severity: "FATAL", ...reason }));
    else this.#client.destroy();
    this.#upstream?.socket.destroy();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** SSLRequest and GSSENCRequest get "N" until the startup or a CancelRequest arrives. */
  async #readStartup(): Promise<StartupMessage> {
    let buffered = Buffer.alloc(0);
    for (;;) {
      const chunk = await this.#nextChunk();
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 4) {
        const length = buffered.readInt32BE(0);
        if (length < 8 || length > maxStartupBytes)
          throw new ProtocolViolation(`invalid startup packet length ${length}`);
        if (buffered.length < length) break;
        const startup = parseStartup(buffered.subarray(0, length));
        buffered = buffered.subarray(length);
        if (startup.code === startupCodes.ssl || startup.code === startupCodes.gssenc) {
          if (buffered.length > 0)
            throw new ProtocolViolation("data after an encryption request before its answer");
          this.#client.write(sslRefused);
          continue;
        }
        if (buffered.length > 0) this.#client.unshift(buffered);
        const minor = startup.code & 0xffff;
        const options = [...startup.parameters.keys()].filter((name) => name.startsWith("_pq_."));
        if (minor > 0 || options.length > 0)
          this.#client.write(negotiateProtocolVersion(0, options));
        return startup;
      }
    }
  }

  #nextChunk(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        cleanup();
        this.#client.pause();
        resolve(chunk);
      };
      const onEnd = () => {
        cleanup();
        reject(new ProtocolViolation("the client closed the connection during startup"));
      };
      const cleanup = () => {
        this.#client.off("data", onData);
        this.#client.off("close", onEnd);
      };
      this.#client.on("data", onData);
      this.#client.on("close", onEnd);
      this.#client.resume();
    });
  }

  #upstreamParameters(startup: StartupMessage): Map<string, string> {
    const passed = new Map<string, string>();
    const dropped: string[] = [];
    for (const [name, value] of startup.parameters) {
      if (passedParameters.has(name.toLowerCase())) passed.set(name, value);
      else if (!["user", "database", "client_encoding"].includes(name) && !name.startsWith("_pq_."))
        dropped.push(name);
    }
    passed.set("client_encoding", "UTF8");
    if (dropped.length > 0)
      this.#options.logger.info(
        { connection: this.#options.connection, dropped },
        "startup parameters not passed to the server",
      );
    return passed;
  }

  #relay(upstream: UpstreamSession): void {
    const clientReader = new MessageReader(maxFrontendMessageBytes);
    const server = upstream.socket;
    const client = this.#client;
    client.on("data", (chunk: Buffer) => {
      if (this.#closed) return;
      try {
        for (const frontend of clientReader.push(chunk)) this.#backlog.push(frontend);
        this.#drain([]);
      } catch (error) {
        this.#fatal(error);
      }
    });
    server.on("data", (chunk: Buffer) => {
      if (this.#closed) return;
      try {
        const out: Buffer[] = [];
        for (const backend of upstream.reader.push(chunk)) this.#fromServer(backend, out);
        if (out.length > 0 && !writeAll(client, out)) {
          server.pause();
          client.once("drain", () => server.resume());
        }
      } catch (error) {
        this.#options.logger.error(
          { err: error, connection: this.#options.connection },
          "the server's answer cannot be relayed",
        );
        this.close({
          sqlState: "08006",
          message: `connection "${this.#options.connection}": the server's answer could not be relayed (${errorMessage(error)})`,
        });
      }
    });
    const serverGone = () => {
      if (this.#closed) return;
      if (this.#terminating) return this.close();
      this.close({
        sqlState: "08006",
        message: `connection "${this.#options.connection}": the server closed the connection`,
      });
    };
    server.on("close", serverGone);
    server.on("error", serverGone);
    server.resume();
    client.resume();
  }

  // --- graph to server -------------------------------------------------------------------------

  /** Handles what the graph sent, in order, until a command is held; then writes `out` upstream. */
  #drain(out: Buffer[]): void {
    // One splice per read, not a shift per message: a pipelined chunk holds thousands.
    let handled = 0;
    while (!this.#holding && !this.#closed && handled < this.#backlog.length)
      this.#fromClient(this.#backlog[handled++] as Message, out);
    this.#backlog.splice(0, handled);
    const server = this.#upstream?.socket;
    if (this.#closed || !server) return;
    if (out.length > 0 && !writeAll(server, out) && !this.#serverFull) {
      this.#serverFull = true;
      server.once("drain", () => {
        this.#serverFull = false;
        this.#flowClient();
      });
    }
    this.#flowClient();
  }

  /** Reads from the graph only while nothing is held and the server takes what it is sent. */
  #flowClient(): void {
    if (this.#closed) return;
    if (this.#holding || this.#serverFull) this.#client.pause();
    else this.#client.resume();
  }

  /** Only a message that parsed exactly is forwarded, and then as the bytes that were parsed. */
  #fromClient(frontend: Message, out: Buffer[]): void {
    const parsed = parseFrontend(frontend);
    // After a refusal in the extended protocol, the server skips to Sync; so does the sidecar.
    if (this.#skipUntilSync && parsed.type !== "S") return;
    switch (parsed.type) {
      case "Q":
        this.#query(parsed.query, frontend.frame, out);
        return;
      case "P":
        this.#parse(parsed, frontend.frame, out);
        return;
      case "B": {
        // A statement the sidecar did not see parsed (a SQL-level PREPARE) is taken to hide
        // masked columns.
        const prepared = this.#statements.get(parsed.statement) ?? {
          classified: unknownQuery,
          statement: undefined,
          hides: true,
        };
        if (!this.#statements.has(parsed.statement)) {
          const requirement = this.#sqlPrepared.get(parsed.statement);
          if (requirement && this.#isHeld(requirement)) {
            this.#refuse("extended", requirement, undefined, undefined, out, heldThroughPrepare);
            return;
          }
        }
        this.#portals.set(parsed.portal, {
          ...prepared,
          masker: undefined,
          ...(prepared.held ? { bind: frontend.frame } : {}),
        });
        out.push(frontend.frame);
        this.#expectations.push({ kind: "bind", swallow: false });
        // The portal's row description, so its rows can be masked even if the graph never asks.
        if (this.#masking) {
          out.push(describeMessage("P", parsed.portal));
          this.#expectations.push({ kind: "describe", swallow: true, portal: parsed.portal });
        }
        return;
      }
      case "D":
        out.push(frontend.frame);
        this.#expectations.push({
          kind: "describe",
          swallow: false,
          ...(parsed.target === "P" ? { portal: parsed.name } : {}),
        });
        return;
      case "E": {
        if (!this.#mayProceed(out, "extended")) return;
        const portal = this.#portals.get(parsed.portal);
        const execute = (out: Buffer[], approval?: ApprovalRecord) => {
          out.push(frontend.frame);
          const running = this.#running(portal?.classified, portal?.statement, true);
          this.#expectations.push({
            kind: "execute",
            portal: parsed.portal,
            statement: { ...running, portal, ...(approval ? { approval } : {}) },
          });
        };
        // Each execution is held on its own, with the parameters it was bound with.
        if (portal?.held) this.#hold(portal.held, portal.bind, portal, "extended", execute, out);
        else execute(out);
        return;
      }
      case "C":
        (parsed.target === "S" ? this.#statements : this.#portals).delete(parsed.name);
        out.push(frontend.frame);
        this.#expectations.push({ kind: "close" });
        return;
      case "S":
        this.#skipUntilSync = false;
        out.push(frontend.frame);
        this.#expectations.push({ kind: "sync" });
        return;
      case "F":
        // The fast-path call runs any function by OID, set_config included.
        this.#refuse(
          "query",
          { kind: "forbidden", why: "the fast-path FunctionCall message runs any function by OID" },
          undefined,
          undefined,
          out,
        );
        return;
      default:
        // Flush, CopyData, CopyDone, CopyFail, Terminate: nothing to check beyond their form.
        if (parsed.type === "X") this.#terminating = true;
        out.push(frontend.frame);
    }
  }

  #query(sql: string, frame: Buffer, out: Buffer[]): void {
    if (!this.#mayProceed(out, "query")) return;
    let classified: ClassifiedQuery;
    try {
      classified = classifyQuery(sql);
    } catch (error) {
      if (!(error instanceof SqlSyntaxError)) throw error;
      this.#refuse("query", undefined, undefined, error, out);
      return;
    }
    // Checked statement by statement, in order, before any of it is forwarded.
    const prepared = new Map<string, Requirement>();
    let held: { requirement: HeldRequirement; statement: ClassifiedStatement } | undefined;
    for (const statement of classified.statements) {
      const requirement = raise(
        this.#requirementOf(statement, prepared),
        this.#maskable(statement),
      );
      const refusal = this.#refusal(requirement);
      if (refusal) {
        this.#refuse("query", requirement, { classified, statement }, undefined, out);
        return;
      }
      if (statement.prepares !== undefined) prepared.set(statement.prepares, requirement);
      else if (this.#isHeld(requirement)) {
        // Approvers see the statements that run, so an EXECUTE cannot stand in for one.
        if (statement.executes !== undefined) {
          this.#refuse(
            "query",
            requirement,
            { classified, statement },
            undefined,
            out,
            heldThroughPrepare,
          );
          return;
        }
        const strictest = stricter(held?.requirement, requirement);
        if (strictest !== held?.requirement) held = { requirement: strictest, statement };
      }
    }
    const forward = (out: Buffer[], approval?: ApprovalRecord) => {
      for (const [name, requirement] of prepared) this.#rememberPrepared(name, requirement);
      this.#rememberCursors(classified);
      out.push(frame);
      this.#expectations.push({
        kind: "query",
        statements: classified.statements.map((statement) => ({
          ...this.#running(classified, statement, this.#hides(statement)),
          ...(approval ? { approval } : {}),
        })),
      });
    };
    // The whole string is held as one command: approvers see all of it.
    if (held) {
      const what = { classified, statement: held.statement };
      this.#hold(
        { requirement: held.requirement, text: sql },
        undefined,
        what,
        "query",
        forward,
        out,
      );
    } else forward(out);
  }

  #parse(parse: { name: string; query: string }, frame: Buffer, out: Buffer[]): void {
    let classified: ClassifiedQuery;
    try {
      classified = classifyQuery(parse.query);
    } catch (error) {
      if (!(error instanceof SqlSyntaxError)) throw error;
      this.#refuse("extended", undefined, undefined, error, out);
      return;
    }
    let requirement: Requirement = { kind: "plumbing" };
    let held: HeldRequirement | undefined;
    for (const statement of classified.statements) {
      const needs = raise(this.#requirementOf(statement, new Map()), this.#maskable(statement));
      requirement = raise(requirement, needs);
      if (statement.prepares === undefined && this.#isHeld(needs)) held = stricter(held, needs);
    }
    const [statement] = classified.statements;
    const refused = this.#refusal(requirement) !== undefined;
    // Approvers see the statements that run, so an EXECUTE cannot stand in for one.
    const throughPrepare = !refused && held !== undefined && statement?.executes !== undefined;
    if (refused || throughPrepare) {
      this.#statements.delete(parse.name);
      const own = throughPrepare ? heldThroughPrepare : undefined;
      this.#refuse("extended", requirement, { classified, statement }, undefined, out, own);
      return;
    }
    if (parse.name !== "") this.#rememberPrepared(parse.name, requirement);
    this.#rememberCursors(classified);
    this.#statements.set(parse.name, {
      classified,
      statement,
      hides: statement ? this.#hides(statement) : false,
      ...(held ? { held: { requirement: held, text: parse.query } } : {}),
    });
    out.push(frame);
    this.#expectations.push({ kind: "parse", swallow: false });
  }

  /** What a statement needs, with EXECUTE of a prepared statement needing what it prepared. */
  #requirementOf(
    statement: ClassifiedStatement,
    preparedNow: Map<string, Requirement>,
  ): Requirement {
    if (statement.executes === undefined) return statement.requirement;
    return (
      preparedNow.get(statement.executes) ??
      this.#sqlPrepared.get(statement.executes) ?? {
        kind: "action",
        action: "admin",
        why: `EXECUTE of "${statement.executes}", which this session never prepared`,
      }
    );
  }

  // A name keeps the strictest requirement it ever had: a PREPARE that failed on the server
  // must not make an earlier, stricter statement of that name look harmless.
  #rememberPrepared(name: string, requirement: Requirement): void {
    const known = this.#sqlPrepared.get(name);
    this.#sqlPrepared.set(name, known ? raise(known, requirement) : requirement);
  }

  #rememberCursors(classified: ClassifiedQuery): void {
    for (const statement of classified.statements)
      if (statement.cursor !== undefined)
        this.#cursors.set(
          statement.cursor,
          this.#cursors.get(statement.cursor) || this.#hides(statement),
        );
  }

  #hides(statement: ClassifiedStatement): boolean {
    if (!this.#masking || this.#masking.columns.size === 0) return false;
    if (statement.fetches !== undefined) return this.#cursors.get(statement.fetches) ?? true;
    return statement.tree ? hidesMaskedColumns(statement.tree, this.#masking.columns) : true;
  }

  /** With masking, COPY's rows must be in the text format the sidecar splits and scans. */
  #maskable(statement: ClassifiedStatement): Requirement {
    const masking = this.#masking;
    if (!masking || !statement.copyFormatted) return { kind: "plumbing" };
    return {
      kind: "forbidden",
      reason: "Unmaskable",
      why: "the grant masks this connection's results, and a COPY in csv or binary format or with its own delimiter cannot be masked; use COPY's default text format",
    };
  }

  /** Why the grant does not allow this requirement, or undefined when it does. */
  #refusal(requirement: Requirement): string | undefined {
    if (requirement.kind === "plumbing") return undefined;
    if (requirement.kind === "forbidden") return requirement.why;
    const grant = this.#target?.grant;
    return grant?.actions.includes(requirement.action) ? undefined : requirement.why;
  }

  /** A granted action the grant holds for a human decision, statement by statement. */
  #isHeld(requirement: Requirement): requirement is HeldRequirement {
    return (
      requirement.kind === "action" &&
      (this.#target?.grant.approval?.actions.includes(requirement.action) ?? false)
    );
  }

  /**
   * Holds a command for approval: nothing more of the graph's is handled until it is decided
   * (its client sees a slow statement). Approved, `forward` sends it exactly as held, with the
   * credential held then; denied, expired, undecidable or canceled, it gets 42501 (57014 when
   * canceled) and nothing of it reaches the server.
   */
  #hold(
    held: { requirement: HeldRequirement; text: string },
    parameters: Buffer | undefined,
    what: Refused,
    protocol: "query" | "extended",
    forward: (out: Buffer[], approval: ApprovalRecord) => void,
    out: Buffer[],
  ): void {
    const holds = this.#options.holds;
    const refuse = (out: Buffer[], refusal: Refusal) =>
      this.#refuse(protocol, held.requirement, what, undefined, out, refusal);
    if (!holds) {
      refuse(out, {
        reason: "ApprovalUnavailable",
        why: "needs approval, and this sidecar cannot hold statements for approval",
      });
      return;
    }
    if (held.text.length > maxHeldStatementLength) {
      refuse(out, {
        reason: "HeldStatementTooLong",
        why: `needs approval, and a statement held for approval may have at most ${maxHeldStatementLength} characters, so approvers can read it`,
      });
      return;
    }
    const request: HoldRequest = {
      connection: this.#options.connection,
      action: held.requirement.action,
      sql: { statement: held.text },
      ...(parameters ? { body: bodyDigest(parameters) } : {}),
    };
    const holding = new AbortController();
    this.#holding = holding;
    const decided = (handle: (out: Buffer[]) => void) => {
      if (this.#closed || this.#holding !== holding) return;
      this.#holding = undefined;
      try {
        const out: Buffer[] = [];
        handle(out);
        this.#drain(out);
      } catch (error) {
        this.#fatal(error);
      }
    };
    holds.decide(request, holding.signal).then(
      (state) =>
        decided((out) => {
          const approval = approvalRecord(state);
          if (state.phase === "Approved") {
            if (this.#mayProceed(out, protocol)) forward(out, approval);
            return;
          }
          refuse(out, {
            reason: state.phase === "Expired" ? "ApprovalExpired" : "ApprovalDenied",
            why: `was held for approval as ${state.name}: ${state.message}`,
            approval,
          });
        }),
      (error: unknown) =>
        decided((out) =>
          refuse(
            out,
            holding.signal.aborted
              ? {
                  reason: "Canceled",
                  why: "was canceled by the graph while it waited for approval",
                  sqlState: "57014",
                }
              : {
                  reason: error instanceof HoldFailed ? error.reason : "ApprovalUnavailable",
                  why: `could not be held for approval: ${errorMessage(error)}`,
                },
          ),
        ),
    );
  }

  /** Every statement needs the credential still held and its event recordable. */
  #mayProceed(out: Buffer[], protocol: "query" | "extended"): boolean {
    const target = this.#options.target();
    if (!target) {
      this.close({
        sqlState: "57P01",
        message: `connection "${this.#options.connection}": the run's credential was revoked`,
      });
      return false;
    }
    this.#target = target;
    if (this.#options.canRecord()) return true;
    this.#refuseWith(
      "58000",
      `connection "${this.#options.connection}": the sidecar cannot record session events (its disk is full), so it forwards nothing`,
      out,
      protocol,
    );
    return false;
  }

  #refuse(
    protocol: "query" | "extended",
    requirement: Requirement | undefined,
    what: Refused | undefined,
    syntax: SqlSyntaxError | undefined,
    out: Buffer[],
    refusal?: Refusal,
  ): void {
    const { sqlState, text } = this.#deny(requirement, what, syntax, refusal);
    this.#refuseWith(sqlState, text, out, protocol);
  }

  /** Records the refusal, then has the server raise it where the statement would have run. */
  #refuseWith(sqlState: string, text: string, out: Buffer[], protocol: "query" | "extended"): void {
    const raiseSql = `DO ${refusalTag}BEGIN RAISE EXCEPTION USING ERRCODE = '${sqlState}', MESSAGE = ${literal(text)}; END${refusalTag}`;
    const refused = this.#running(undefined, undefined, false);
    if (protocol === "query") {
      out.push(queryMessage(raiseSql));
      this.#expectations.push({ kind: "query", statements: [refused], refusal: true });
      return;
    }
    out.push(parseMessage("", raiseSql), bindMessage("", ""), executeMessage(""));
    this.#expectations.push(
      { kind: "parse", swallow: true },
      { kind: "bind", swallow: true },
      { kind: "execute", portal: "", statement: refused, refusal: true },
    );
    this.#statements.delete("");
    this.#portals.delete("");
    this.#skipUntilSync = true;
  }

  #deny(
    requirement: Requirement | undefined,
    what: Refused | undefined,
    syntax: SqlSyntaxError | undefined,
    refusal?: Refusal,
  ): { sqlState: string; text: string } {
    const connection = this.#options.connection;
    const actions = this.#target?.grant.actions ?? [];
    const command = what?.statement?.command ?? "the statement";
    let text: string;
    let reason: string;
    let sqlState = "42501";
    if (refusal) {
      reason = refusal.reason;
      sqlState = refusal.sqlState ?? sqlState;
      text = `connection "${connection}": ${command} ${refusal.why}`;
    } else if (syntax) {
      sqlState = "42601";
      reason = "SyntaxError";
      text = `connection "${connection}": the statement does not parse, so it is not forwarded: ${syntax.message}`;
    } else if (requirement?.kind === "forbidden") {
      reason = requirement.reason ?? "Forbidden";
      text = `connection "${connection}": ${command} is never allowed through the sidecar: ${requirement.why}`;
    } else if (requirement?.kind === "action") {
      reason = "ActionNotGranted";
      text = `connection "${connection}": ${command} needs the ${requirement.action} action (${requirement.why}); the run's grant allows ${actions.join(", ") || "nothing"}`;
    } else {
      reason = "Forbidden";
      text = `connection "${connection}": refused`;
    }
    const now = Date.now();
    this.#options.record({
      time: new Date(now).toISOString(),
      kind: "denied",
      connection,
      reason,
      ...(what ? { sql: this.#sqlRecord(what.classified, what.statement, requirement) } : {}),
      ...(refusal?.approval ? { approval: refusal.approval } : {}),
    });
    return { sqlState, text };
  }

  #running(
    classified: ClassifiedQuery | undefined,
    statement: ClassifiedStatement | undefined,
    hides: boolean,
  ): RunningStatement {
    const now = Date.now();
    return {
      classified: classified ?? unknownQuery,
      statement,
      hides,
      started: performance.now(),
      time: new Date(now).toISOString(),
      rows: 0,
    };
  }

  // --- server to graph -------------------------------------------------------------------------

  #fromServer(backend: Message, out: Buffer[]): void {
    switch (backend.type) {
      case "N":
      case "A":
      case "S":
        out.push(backend.frame);
        return;
    }
    const head = this.#expectations[0];
    if (!head) {
      // A server ending an idle session says why (FATAL) before it closes.
      if (backend.type !== "E")
        throw new Error(`an unexpected "${backend.type}" message from the server`);
      out.push(backend.frame);
      return;
    }
    switch (backend.type) {
      case "1":
      case "2":
        this.#expect(head, backend.type === "1" ? "parse" : "bind");
        this.#expectations.shift();
        if (!("swallow" in head && head.swallow)) out.push(backend.frame);
        return;
      case "3":
        this.#expect(head, "close");
        this.#expectations.shift();
        out.push(backend.frame);
        return;
      case "t":
        this.#expect(head, "describe");
        out.push(backend.frame);
        return;
      case "T":
      case "n": {
        if (head.kind === "describe") {
          this.#expectations.shift();
          if (backend.type === "T" && head.portal !== undefined) {
            const portal = this.#portals.get(head.portal);
            if (portal)
              portal.masker = RowMasker.for(
                parseRowDescription(backend.body),
                this.#masking,
                portal.hides,
              );
          }
          if (!head.swallow) out.push(backend.frame);
          return;
        }
        const running = this.#currentStatement(head);
        if (backend.type === "T")
          running.masker = RowMasker.for(
            parseRowDescription(backend.body),
            this.#masking,
            running.hides,
          );
        out.push(backend.frame);
        return;
      }
      case "D": {
        const running = this.#currentStatement(head);
        running.rows++;
        const masker = running.masker ?? running.portal?.masker;
        out.push(masker instanceof RowMasker ? masker.maskDataRow(backend.frame) : backend.frame);
        return;
      }
      case "H": {
        const running = this.#currentStatement(head);
        running.masker = this.#copyMasker(running, backend.body);
        out.push(backend.frame);
        return;
      }
      case "d": {
        const running = this.#currentStatement(head);
        const masker = running.masker;
        out.push(
          masker instanceof CopyRowMasker ? masker.maskCopyData(backend.frame) : backend.frame,
        );
        return;
      }
      case "G":
      case "c":
        this.#currentStatement(head);
        out.push(backend.frame);
        return;
      case "C":
      case "I":
      case "s": {
        const running = this.#currentStatement(head);
        this.#finish(running, backend.type === "C" ? commandTag(backend.body) : undefined);
        if (head.kind === "query") {
          head.statements.shift();
          // The next statement of the string starts when this one ends.
          const next = head.statements[0];
          if (next) {
            next.started = performance.now();
            next.time = new Date().toISOString();
          }
        } else this.#expectations.shift();
        out.push(backend.frame);
        return;
      }
      case "E": {
        const fields = parseNoticeFields(backend.body);
        const refusal = "refusal" in head && head.refusal;
        if (!refusal) {
          const running =
            head.kind === "query"
              ? head.statements[0]
              : head.kind === "execute"
                ? head.statement
                : undefined;
          if (running?.statement) this.#finish(running, undefined, fields.get("C"));
        }
        // A query ends with ReadyForQuery; the extended protocol skips to Sync.
        if (head.kind === "query") head.statements.length = 0;
        else {
          while (this.#expectations[0] && this.#expectations[0].kind !== "sync")
            this.#expectations.shift();
          // The server discards what arrives before the graph's next Sync: so does the sidecar.
          if (this.#expectations.length === 0) this.#skipUntilSync = true;
        }
        out.push(refusal ? withoutContext(backend.body) : backend.frame);
        return;
      }
      case "Z":
        if (head.kind !== "query" && head.kind !== "sync")
          throw new Error(`ReadyForQuery while a ${head.kind} was awaited`);
        this.#expectations.shift();
        out.push(backend.frame);
        return;
      default:
        throw new Error(`the server sent a "${backend.type}" message the sidecar does not relay`);
    }
  }

  #expect(head: Expectation, kind: Expectation["kind"]): void {
    if (head.kind !== kind)
      throw new Error(`the server answered a ${head.kind} with a ${kind}'s answer`);
  }

  #currentStatement(head: Expectation): RunningStatement {
    if (head.kind === "execute") return head.statement;
    if (head.kind === "query") {
      const running = head.statements[0];
      if (running) return running;
    }
    throw new Error(`the server sent a result while a ${head.kind} was awaited`);
  }

  #copyMasker(running: RunningStatement, body: Buffer): CopyRowMasker | undefined {
    const masking = this.#masking;
    if (!masking) return undefined;
    const columns = body.readInt16BE(1);
    const positions = new Set<number>();
    const names = running.statement?.copyColumns;
    if (masking.columns.size > 0) {
      for (let i = 0; i < columns; i++) {
        const name = names?.[i];
        if (
          !names ||
          running.hides ||
          (name !== undefined && masking.columns.has(name.toLowerCase()))
        )
          positions.add(i);
      }
    }
    return new CopyRowMasker(masking, positions);
  }

  #finish(
    running: RunningStatement,
    tag?: { command: string; rows?: number },
    sqlState?: string,
  ): void {
    if (!running.statement) return;
    const counts: MaskCounts = running.masker?.counts ?? {};
    const masked = Object.keys(counts).length > 0;
    const rows = tag?.rows ?? running.rows;
    const sql = this.#sqlRecord(
      running.classified,
      running.statement,
      running.statement.requirement,
    );
    this.#options.record({
      time: running.time,
      kind: masked ? "masked" : "statement",
      connection: this.#options.connection,
      durationMs: Math.round((performance.now() - running.started) * 1000) / 1000,
      ...(masked ? { masked: { ...counts } } : {}),
      sql: { ...sql, ...(sqlState ? { error: sqlState } : { rows }) },
      ...(running.approval ? { approval: running.approval } : {}),
    });
    // A portal run again counts afresh.
    for (const name in counts) delete counts[name];
    running.started = performance.now();
    running.time = new Date().toISOString();
    running.rows = 0;
  }

  #sqlRecord(
    classified: ClassifiedQuery,
    statement: ClassifiedStatement | undefined,
    requirement: Requirement | undefined,
  ): SqlStatementRecord {
    return {
      command: statement?.command ?? "UNKNOWN",
      ...(requirement?.kind === "action" ? { action: requirement.action } : {}),
      statement: classified.normalized.slice(0, maxSqlStatementLength),
      fingerprint: classified.fingerprint,
      ...(statement && statement.tables.length > 0 ? { tables: statement.tables } : {}),
    };
  }

  #fatal(error: unknown): void {
    if (error instanceof ProtocolViolation) {
      this.#options.logger.info(
        { connection: this.#options.connection, problem: error.message },
        "malformed frontend traffic",
      );
      this.close({
        sqlState: error.sqlState,
        message: `connection "${this.#options.connection}": ${error.message}`,
      });
      return;
    }
    this.#options.logger.error(
      { err: error, connection: this.#options.connection },
      "postgres session failed",
    );
    this.close({
      sqlState: "XX000",
      message: `connection "${this.#options.connection}": the sidecar failed (${errorMessage(error)})`,
    });
  }

  #fatalMessage(sqlState: string, text: string): void {
    this.close({ sqlState, message: text });
  }
}

/**
 * Writes the parts in one go: frames that were next to each other in the read that brought them
 * are written as one slice (no copy), the rest gathered by cork. False when the socket is full.
 */
function writeAll(socket: Socket, parts: Buffer[]): boolean {
  const slices: Buffer[] = [];
  for (const part of parts) {
    const last = slices.at(-1);
    if (last && last.buffer === part.buffer && last.byteOffset + last.length === part.byteOffset)
      slices[slices.length - 1] = Buffer.from(
        last.buffer,
        last.byteOffset,
        last.length + part.length,
      );
    else slices.push(part);
  }
  if (slices.length === 1) return socket.write(slices[0] as Buffer);
  socket.cork();
  let room = true;
  for (const slice of slices) room = socket.write(slice) && room;
  socket.uncork();
  return room;
}

/** A single-quoted SQL literal; the dollar tag can never appear in it. */
function literal(text: string): string {
  return `'${text.replaceAll(refusalTag, "").replaceAll("'", "''")}'`;
}

/** The refusal's ErrorResponse without PL/pgSQL's context line, which is the sidecar's business. */
function withoutContext(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const end = body.indexOf(0, offset + 1);
    if (end < 0) break;
    const code = String.fromCharCode(body[offset] ?? 0);
    if (code !== "W" && code !== "F" && code !== "L" && code !== "R")
      parts.push(body.subarray(offset, end + 1));
    offset = end + 1;
  }
  parts.push(Buffer.from([0]));
  return message("E", Buffer.concat(parts));
}
