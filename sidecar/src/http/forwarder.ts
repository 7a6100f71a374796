// The one path every proxied HTTP request takes, whichever listener received it: the grant
// decides on the normalized path, the graph's credential and hop-by-hop headers are dropped,
// the connection's credential is added, and the bodies stream through a keep-alive pool to
// the upstream over verified TLS. Denied requests never reach the upstream; all are recorded.

import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { Readable, Transform } from "node:stream";
import { createSecureContext } from "node:tls";
import type { Logger } from "pino";
import { type Dispatcher, Pool } from "undici";
import {
  type GrantClaim,
  type HttpCredential,
  maxHeldBodyBytes,
} from "../../../api/credentials.ts";
import {
  type ApprovalRecord,
  queryNames,
  type SessionEventKind,
  type SessionRecord,
} from "../../../api/session-events.ts";
import {
  approvalRecord,
  bodyDigest,
  type CommandHolds,
  type HoldDecision,
  HoldFailed,
} from "../credentials/command-holds.ts";
import { CredentialScrubber, credentialForms, scrubHeaders } from "./credential-scrubber.ts";
import { answerJson } from "./loopback-server.ts";
import { normalizePath } from "./request-path.ts";
import {
  type BodyChanges,
  graphLeftError,
  MaskingRefusal,
  maskingFor,
  needsChanging,
  type ResponseMasking,
  type SentBody,
  sendChanged,
} from "./response-body.ts";
import { compileHttpPolicy, type HttpAction, type HttpPolicy } from "./rules.ts";

/** A connection's upstream, parsed once per credential (never per request). */
export interface Upstream {
  url: URL;
  /** The URL's path without trailing slashes; forwarded paths are appended to it. */
  basePath: string;
  /** One keep-alive pool per origin and CA: a refreshed credential shares it. */
  poolKey: string;
  /** The credential's headers as name/value pairs, names lowercased. */
  credentialHeaders: string[];
  /** Their names: the graph's headers of the same names are dropped. */
  credentialHeaderNames: Set<string>;
  /** What of the credential must never come back to the graph (see credential-scrubber.ts). */
  credentialForms: Buffer[];
  /** Whether the upstream's Set-Cookie reaches the graph (the Connection's allowCookies). */
  cookies: boolean;
}

const upstreams = new WeakMap<HttpCredential, Upstream>();

export function upstreamOf(credential: HttpCredential): Upstream {
  let upstream = upstreams.get(credential);
  if (!upstream) {
    const url = new URL(credential.url);
    const credentialHeaders = Object.entries(credential.headers).flatMap(([name, value]) => [
      name.toLowerCase(),
      value,
    ]);
    upstream = {
      url,
      basePath: url.pathname.replace(/\/+$/, ""),
      poolKey: `${url.origin}\n${credential.caPem ?? ""}`,
      credentialHeaders,
      credentialHeaderNames: new Set(Object.keys(credential.headers).map((n) => n.toLowerCase())),
      credentialForms: credentialForms(credential),
      cookies: credential.allowCookies === true,
    };
    upstreams.set(credential, upstream);
  }
  return upstream;
}

/** What a request needs from the held credential; undefined while none is held (fail closed). */
export interface HttpTarget {
  credential: HttpCredential;
  grant: GrantClaim;
}

export interface ForwardRequest {
  connection: string;
  target: HttpTarget | undefined;
  /** The target as it is now: a held request goes with the credential held when approved. */
  retarget?: () => HttpTarget | undefined;
  /** The request target's path and query, origin-form ("/v1/docs?q=1"). */
  pathAndQuery: string;
}

export interface ForwarderOptions {
  run: string;
  /** Where commands the grant holds for approval wait for their decision. */
  holds?: Pick<CommandHolds, "decide">;
  record: (record: SessionRecord) => void;
  /** False while events cannot be recorded (the buffer is full): nothing is forwarded then. */
  canRecord?: () => boolean;
  /** How long a request body may stall before the request is given up (408); default 30 s. */
  requestBodyIdleMs?: number;
  logger: Logger;
}

// Hop-by-hop headers (RFC 9110 7.6.1): never forwarded in either direction.
const hopByHop = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
]);
// The graph's own credentials and claims about the route, and Expect, which the sidecar answers
// itself: the sidecar sets these.
const neverFromGraph = new Set([
  "authorization",
  "expect",
  "host",
  "via",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
]);
// Headers some frameworks read as the request's real method or path: a read-only grant would
// become a DELETE, a matched path another one.
const methodOverrides = new Set(["x-http-method-override", "x-http-method", "x-method-override"]);
const pathOverrides = new Set([
  "x-original-url",
  "x-rewrite-url",
  "x-original-uri",
  "x-forwarded-uri",
  "x-forwarded-prefix",
]);
const readMethods = new Set(["GET", "HEAD"]);

/** Why the graph's headers are refused before anything is decided, or undefined. */
export function headerRefusal(
  method: string,
  headers: IncomingHttpHeaders,
): { reason: string; message: string } | undefined {
  for (const name of Object.keys(headers)) {
    if (methodOverrides.has(name)) {
      return {
        reason: "MethodOverride",
        message: `header ${name} would let the upstream run another method than the grant checked`,
      };
    }
    if (pathOverrides.has(name)) {
      return {
        reason: "PathOverride",
        message: `header ${name} would let the upstream serve another path than the grant checked`,
      };
    }
    // CGI and many servers read "_" and "-" alike: X_Api_Key would stand in for X-Api-Key.
    if (name.includes("_")) {
      return {
        reason: "UnderscoreHeader",
        message: `header ${name} has an underscore, which servers may read as the header with a hyphen`,
      };
    }
  }
  if (readMethods.has(method) && hasBodyHeaders(headers)) {
    return { reason: "BodyOnRead", message: `a ${method} request carries no body here` };
  }
  return undefined;
}

/** Why the query is refused before anything is decided, or undefined. */
export function queryRefusal(
  names: string[] | undefined,
): { reason: string; message: string } | undefined {
  // Express's method-override, Rails and Laravel read these as the request's real method.
  const override = names?.find((name) => methodOverrideParameters.has(name.toLowerCase()));
  if (override === undefined) return undefined;
  return {
    reason: "MethodOverride",
    message: `query parameter ${override} would let the upstream run another method than the grant checked`,
  };
}
const methodOverrideParameters = new Set(["_method", "x-http-method-override"]);

const defaultRequestBodyIdleMs = 30_000;
/** How long the upstream may take to start its answer, and to send each part of it. */
const upstreamIdleMs = 300_000;

// A body the sidecar reads must arrive whole and readable: no ranges (a credential fetched in
// pieces would pass the scrubber), and plain if the upstream obliges.
const neverWhenRead = new Set(["range", "if-range", "accept-encoding"]);

export class Forwarder {
  readonly #options: ForwarderOptions;
  readonly #pools = new Map<string, Pool>();
  readonly #policies = new WeakMap<GrantClaim, HttpPolicy>();
  readonly #maskings = new WeakMap<GrantClaim, { masking: ResponseMasking | undefined }>();

  constructor(options: ForwarderOptions) {
    this.#options = options;
  }

  /** Decides, then forwards or refuses; the answer streams to res and the record follows it. */
  forward(req: IncomingMessage, res: ServerResponse, request: ForwardRequest): void {
    const exchange = new Exchange(this.#options, req, res, request.connection);
    const { target } = request;
    if (!target) {
      exchange.deny(
        503,
        "CredentialUnavailable",
        "the sidecar holds no credential for this run; nothing is forwarded",
      );
      return;
    }
    if (this.#options.canRecord && !this.#options.canRecord()) {
      exchange.deny(
        503,
        "EventBufferFull",
        "session events cannot be recorded right now, so nothing is forwarded",
      );
      return;
    }
    const queryAt = request.pathAndQuery.indexOf("?");
    const rawPath = queryAt === -1 ? request.pathAndQuery : request.pathAndQuery.slice(0, queryAt);
    const query = queryAt === -1 ? "" : request.pathAndQuery.slice(queryAt);
    exchange.query = queryNames(query);
    const badQuery = queryRefusal(exchange.query);
    if (badQuery) {
      exchange.deny(400, badQuery.reason, badQuery.message);
      return;
    }
    const normalized = normalizePath(rawPath);
    if (!normalized.ok) {
      exchange.deny(400, "BadPath", `the request path was refused: ${normalized.reason}`);
      return;
    }
    const path = normalized.path;
    const refusal = headerRefusal(exchange.method, req.headers);
    if (refusal) {
      exchange.deny(400, refusal.reason, refusal.message, path);
      return;
    }
    const decision = this.#policy(target.grant).decide(exchange.method, path);
    if (!decision.allowed) {
      exchange.deny(403, decision.reason, decision.message, path);
      return;
    }
    // The body was held back until the request was allowed (RFC 9110 10.1.1).
    if (/^100-continue$/i.test(String(req.headers.expect ?? ""))) res.writeContinue();
    const sent = { path, encoded: `${normalized.encoded}${query}`, rule: decision.rule };
    if (decision.held) {
      void this.#holdThenForward(exchange, req, request, sent, decision.held);
      return;
    }
    // Only a request with a body pays for a counting stream.
    const bytesIn = hasBody(req) ? this.#requestBody() : undefined;
    this.#dispatch(exchange, req, target, sent, bytesIn ? req.pipe(bytesIn) : undefined, bytesIn);
  }

  #requestBody(): RequestBody {
    return new RequestBody(this.#options.requestBodyIdleMs ?? defaultRequestBodyIdleMs);
  }

  #dispatch(
    exchange: Exchange,
    req: IncomingMessage,
    target: HttpTarget,
    sent: { path: string; encoded: string; rule: string },
    body: Readable | undefined,
    bytesIn: RequestBody | undefined,
  ): void {
    const upstream = upstreamOf(target.credential);
    const masking = this.#masking(target.grant);
    exchange.start(sent.path, sent.rule, upstream, bytesIn, masking);
    this.#pool(target.credential, upstream).dispatch(
      {
        method: exchange.method,
        path: `${upstream.basePath}${sent.encoded}`,
        headers: upstreamHeaders(req, upstream, readsBody(upstream, masking)),
        body: body ?? null,
      },
      exchange,
    );
  }

  /**
   * A request whose action the grant holds for approval: its body is read whole (bounded), the
   * operator records it for approvers with the body's digest, and it goes upstream exactly as
   * held once approved; denied, expired or undecidable, it is refused. The graph's client sees
   * a slow request meanwhile; if it gives up, the wait ends.
   */
  async #holdThenForward(
    exchange: Exchange,
    req: IncomingMessage,
    request: ForwardRequest,
    sent: { path: string; encoded: string; rule: string },
    action: HttpAction,
  ): Promise<void> {
    const holds = this.#options.holds;
    if (!holds) {
      exchange.deny(
        503,
        "ApprovalUnavailable",
        "this sidecar cannot hold commands for approval",
        sent.path,
      );
      return;
    }
    let body: Buffer | undefined;
    try {
      body = hasBody(req) ? await readHeldBody(req, this.#requestBody()) : undefined;
    } catch (error) {
      if (error instanceof HeldBodyTooLarge) {
        exchange.deny(413, "HeldBodyTooLarge", error.message, sent.path);
      } else {
        exchange.deny(408, "RequestBodyStalled", message(error), sent.path);
      }
      return;
    }
    const graphLeft = new AbortController();
    exchange.onGraphLeft(() => graphLeft.abort());
    let state: HoldDecision;
    try {
      state = await holds.decide(
        {
          connection: request.connection,
          action,
          http: { method: exchange.method, path: sent.path },
          ...(body ? { body: bodyDigest(body) } : {}),
        },
        graphLeft.signal,
      );
    } catch (error) {
      if (graphLeft.signal.aborted) {
        exchange.deny(
          499,
          "GraphDisconnected",
          "the graph gave up while the request was held",
          sent.path,
        );
      } else if (error instanceof HoldFailed) {
        exchange.deny(
          error.reason === "CredentialUnavailable" ? 503 : 403,
          error.reason,
          `the request could not be held for approval: ${error.message}`,
          sent.path,
        );
      } else {
        exchange.deny(502, "ApprovalUnavailable", message(error), sent.path);
      }
      return;
    }
    exchange.approval = approvalRecord(state);
    if (state.phase !== "Approved") {
      const reason = state.phase === "Expired" ? "ApprovalExpired" : "ApprovalDenied";
      exchange.deny(403, reason, `held as ${state.name}: ${state.message}`, sent.path);
      return;
    }
    // The credential held now: it may have been refreshed, or revoked, during the wait.
    const target = request.retarget?.() ?? request.target;
    if (!target) {
      exchange.deny(
        503,
        "CredentialUnavailable",
        "the run's credential is gone: the approved request is not sent",
        sent.path,
      );
      return;
    }
    const bytesIn = body ? this.#requestBody() : undefined;
    const held = bytesIn && body ? Readable.from([body]).pipe(bytesIn) : undefined;
    this.#dispatch(exchange, req, target, sent, held, bytesIn);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#pools.values()].map((pool) => pool.destroy()));
    this.#pools.clear();
  }

  #masking(grant: GrantClaim): ResponseMasking | undefined {
    let entry = this.#maskings.get(grant);
    if (!entry) {
      entry = { masking: maskingFor(grant.masking) };
      this.#maskings.set(grant, entry);
    }
    return entry.masking;
  }

  #policy(grant: GrantClaim): HttpPolicy {
    let policy = this.#policies.get(grant);
    if (!policy) {
      policy = compileHttpPolicy(grant);
      this.#policies.set(grant, policy);
    }
    return policy;
  }

  #pool(credential: HttpCredential, upstream: Upstream): Pool {
    let pool = this.#pools.get(upstream.poolKey);
    if (!pool) {
      // One TLS context for the pool's connections: the CA is parsed once, not per connection.
      const trust = credential.caPem
        ? { secureContext: createSecureContext({ ca: credential.caPem }) }
        : {};
      pool = new Pool(upstream.url.origin, {
        connections: 64,
        connect: trust,
        headersTimeout: upstreamIdleMs,
        bodyTimeout: upstreamIdleMs,
      });
      this.#pools.set(upstream.poolKey, pool);
    }
    return pool;
  }
}

/**
 * One request from the graph, and for a forwarded one undici's dispatch handler: the upstream's
 * answer streams to the graph with backpressure (no intermediate stream unless it is masked),
 * and the request is recorded once, when it is over.
 */
class Exchange implements Dispatcher.DispatchHandler {
  readonly method: string;
  readonly #options: ForwarderOptions;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #connection: string;
  readonly #started = performance.now();
  readonly #time = new Date().toISOString();
  #path: string | undefined;
  /** The query's parameter names: what an audit needs of it, never the values. */
  query: string[] | undefined;
  /** How a held request was decided. */
  approval: ApprovalRecord | undefined;
  #rule: string | undefined;
  /** Set once the request is allowed: it goes there. */
  #upstream: Upstream | undefined;
  #bytesIn: RequestBody | undefined;
  #bytesOut = 0;
  #masking: ResponseMasking | undefined;
  /** Where a changed answer's body goes; undefined while it streams straight to the graph. */
  #changedBody: Readable | undefined;
  /** Scrubs a body that streams straight to the graph. */
  #scrubber: CredentialScrubber | undefined;
  /** What was taken out of the answer's headers. */
  #headerCounts: Record<string, number> = {};
  #controller: Dispatcher.DispatchController | undefined;
  #graphLeft = false;
  #recorded = false;

  constructor(
    options: ForwarderOptions,
    req: IncomingMessage,
    res: ServerResponse,
    connection: string,
  ) {
    this.#options = options;
    this.#req = req;
    this.#res = res;
    this.#connection = connection;
    this.method = req.method ?? "";
  }

  deny(status: number, reason: string, error: string, path?: string): void {
    // Recorded first: a kill between the two must not leave a refusal the graph saw unrecorded.
    this.#path = path;
    this.#record("denied", status, reason);
    answerJson(this.#res, status, {
      error,
      run: this.#options.run,
      connection: this.#connection,
      rule: null,
      reason,
    });
    this.#req.resume();
  }

  start(
    path: string,
    rule: string,
    upstream: Upstream,
    bytesIn: RequestBody | undefined,
    masking: ResponseMasking | undefined,
  ): void {
    this.#path = path;
    this.#rule = rule;
    this.#upstream = upstream;
    this.#bytesIn = bytesIn;
    this.#masking = masking;
    this.#res.on("close", this.#onGraphClose);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#graphLeft) controller.abort(graphLeftError());
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    status: number,
    headers: IncomingHttpHeaders,
  ): void {
    // Informational answers: Early Hints' links go on, the rest (100 to an Expect the sidecar
    // never sent, 102) end here; the final answer follows.
    const upstream = this.#upstream as Upstream;
    if (status < 200) {
      if (status === 103 && headers.link !== undefined) {
        const hints = { link: headers.link };
        scrubHeaders(hints, upstream.credentialForms);
        this.#res.writeEarlyHints(hints);
      }
      return;
    }
    const outgoing = responseHeaders(headers);
    if (outgoing["set-cookie"] && !upstream.cookies) {
      this.#headerCounts["set-cookie"] = [outgoing["set-cookie"]].flat().length;
      delete outgoing["set-cookie"];
    }
    const scrubbed = scrubHeaders(outgoing, upstream.credentialForms);
    if (scrubbed) this.#headerCounts.credential = scrubbed;
    const changes: BodyChanges = {
      masking: this.#masking,
      credentialForms: upstream.credentialForms,
    };
    const empty = headers["content-length"] === "0";
    if (
      carriesBody(this.method, status) &&
      !empty &&
      needsChanging(headers["content-encoding"], changes)
    ) {
      const body = new Readable({ read: () => controller.resume() });
      this.#changedBody = body;
      sendChanged(status, outgoing, body, this.#res, changes).then(
        (sent) => {
          this.#bytesOut = sent.bytesOut;
          this.#finish(status, sent.counts, sent.passedUnmasked && "PassedUnmasked");
        },
        (error: unknown) => {
          this.#fail(error);
          controller.abort(error as Error);
        },
      );
      return;
    }
    // Scrubbed in place: the body keeps its length, and streams.
    if (upstream.credentialForms.length > 0) {
      this.#scrubber = new CredentialScrubber(upstream.credentialForms);
    }
    this.#res.writeHead(status, outgoing);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#changedBody) {
      if (!this.#changedBody.push(chunk)) controller.pause();
      return;
    }
    const out = this.#scrubber ? this.#scrubber.write(chunk) : chunk;
    this.#bytesOut += out.length;
    if (!this.#res.write(out)) {
      controller.pause();
      this.#res.once("drain", () => controller.resume());
    }
  }

  onResponseEnd(): void {
    if (this.#changedBody) {
      this.#changedBody.push(null);
      return;
    }
    const tail = this.#scrubber?.end();
    this.#bytesOut += tail?.length ?? 0;
    this.#res.end(tail);
    const hits = this.#scrubber?.hits ?? 0;
    this.#finish(this.#res.statusCode, hits ? { credential: hits } : {});
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, error: Error): void {
    // A changed answer fails through sendChanged, which reads this body.
    if (this.#changedBody) this.#changedBody.destroy(error);
    else this.#fail(error);
  }

  /** Records a delivered answer: masked when anything was taken out of it. */
  #finish(status: number, counts: SentBody["counts"], reason?: string): void {
    let all: Record<string, number> | undefined;
    for (const source of [this.#headerCounts, counts] as Record<string, number | undefined>[]) {
      for (const kind in source) {
        const count = source[kind];
        if (!count) continue;
        all ??= {};
        all[kind] = (all[kind] ?? 0) + count;
      }
    }
    this.#record(all ? "masked" : "request", status, reason, all);
  }

  /** Calls back if the graph goes away before its answer is complete (a held request waits). */
  onGraphLeft(callback: () => void): void {
    this.#res.once("close", () => {
      if (!this.#res.writableFinished) callback();
    });
  }

  readonly #onGraphClose = () => {
    if (this.#res.writableFinished) return;
    this.#graphLeft = true;
    this.#controller?.abort(graphLeftError());
  };

  #fail(error: unknown): void {
    if (this.#recorded) return;
    const stalled = error instanceof RequestBodyStalled;
    const reason =
      error instanceof MaskingRefusal
        ? error.reason
        : stalled
          ? "RequestBodyTimeout"
          : this.#graphLeft
            ? "GraphDisconnected"
            : "UpstreamUnavailable";
    if (!this.#res.headersSent) {
      // The rest of a stalled body must not be read as the next request.
      if (stalled) this.#res.setHeader("connection", "close");
      answerJson(this.#res, stalled ? 408 : 502, {
        error:
          error instanceof MaskingRefusal
            ? `${error.message}; the response was withheld`
            : stalled
              ? error.message
              : `the upstream ${this.#upstream?.url.origin} could not be reached: ${message(error)}`,
        run: this.#options.run,
        connection: this.#connection,
        rule: this.#rule ?? null,
        reason,
      });
    } else {
      this.#res.destroy();
    }
    this.#req.resume();
    this.#record("error", this.#res.statusCode, reason);
    this.#options.logger.debug(
      { err: error, connection: this.#connection, path: this.#path },
      "upstream request failed",
    );
  }

  /** The request's one record, always of this shape: what a refusal never had stays undefined. */
  #record(
    kind: SessionEventKind,
    status: number,
    reason?: string,
    masked?: Partial<Record<string, number>>,
  ): void {
    if (this.#recorded) return;
    this.#recorded = true;
    const forwarded = this.#upstream !== undefined;
    this.#options.record({
      time: this.#time,
      kind,
      connection: this.#connection,
      method: this.method,
      path: this.#path,
      query: this.query,
      status,
      bytesIn: forwarded ? (this.#bytesIn?.bytes ?? 0) : undefined,
      bytesOut: forwarded ? this.#bytesOut : undefined,
      durationMs: Math.round((performance.now() - this.#started) * 1000) / 1000,
      rule: this.#rule,
      reason,
      masked: masked as Record<string, number> | undefined,
      approval: this.approval,
    });
  }
}

/** The graph's headers minus hop-by-hop and credential headers, plus the connection's own. */
function upstreamHeaders(req: IncomingMessage, upstream: Upstream, read: boolean): string[] {
  const listed = namedByConnection(req.headers.connection);
  const headers: string[] = [];
  for (const name in req.headers) {
    const value = req.headers[name];
    if (value === undefined || hopByHop.has(name) || listed?.has(name)) continue;
    if (neverFromGraph.has(name) || upstream.credentialHeaderNames.has(name)) continue;
    if (read && neverWhenRead.has(name)) continue;
    if (typeof value === "string") headers.push(name, value);
    else for (const each of value) headers.push(name, each);
  }
  if (read) headers.push("accept-encoding", "identity");
  // What the sidecar decided, not what the graph said: the graph's Host is never passed on.
  headers.push("via", "1.1 langgraph-jit", "forwarded", `proto=http;host="${upstream.url.host}"`);
  for (const header of upstream.credentialHeaders) headers.push(header);
  return headers;
}

function responseHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const listed = namedByConnection(headers.connection);
  const result: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || hopByHop.has(name) || listed?.has(name)) continue;
    result[name] = value;
  }
  result.via = result.via ? `${result.via}, 1.1 langgraph-jit` : "1.1 langgraph-jit";
  return result;
}

/** Headers a Connection header lists are hop-by-hop too; undefined when it lists none. */
function namedByConnection(connection: string | string[] | undefined): Set<string> | undefined {
  if (connection === undefined) return undefined;
  const value = String(connection).toLowerCase();
  // The usual values name only hop-by-hop headers already dropped.
  if (value === "keep-alive" || value === "close") return undefined;
  return new Set(
    value
      .split(",")
      .map((name) => name.trim())
      .filter(Boolean),
  );
}

/** Whether the sidecar reads the upstream's answers: to mask them, or to scrub the credential. */
function readsBody(upstream: Upstream, masking: ResponseMasking | undefined): boolean {
  return masking !== undefined || upstream.credentialForms.length > 0;
}

/** Whether a response to method with status has a body at all (RFC 9110 6.4.1). */
function carriesBody(method: string, status: number): boolean {
  return method !== "HEAD" && status >= 200 && status !== 204 && status !== 304;
}

function hasBody(req: IncomingMessage): boolean {
  return hasBodyHeaders(req.headers);
}

function hasBodyHeaders(headers: IncomingHttpHeaders): boolean {
  return headers["transfer-encoding"] !== undefined || Number(headers["content-length"] ?? 0) > 0;
}

class HeldBodyTooLarge extends Error {
  override name = "HeldBodyTooLarge";
}

/** A held request's body, whole: approvers approve its digest, and exactly it is sent. */
async function readHeldBody(req: IncomingMessage, counter: RequestBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req.pipe(counter) as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxHeldBodyBytes) {
      counter.destroy();
      throw new HeldBodyTooLarge(
        `a request held for approval carries at most ${maxHeldBodyBytes} bytes of body`,
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The request body stopped arriving for longer than requestBodyIdleMs. */
class RequestBodyStalled extends Error {
  override name = "RequestBodyStalled";
}

/** The request body on its way upstream: counted for the record, and given up when it stalls
 * (a pool connection must not wait on the graph forever). */
class RequestBody extends Transform {
  bytes = 0;
  readonly #idle: NodeJS.Timeout;

  constructor(idleMs: number) {
    super();
    const stalled = new RequestBodyStalled(`the request body stalled for ${idleMs / 1000} s`);
    this.#idle = setTimeout(() => this.destroy(stalled), idleMs).unref();
    this.once("close", () => clearTimeout(this.#idle));
  }

  override _transform(
    chunk: Buffer,
    _encoding: BufferEncoding,
    done: (error?: Error | null, data?: Buffer) => void,
  ): void {
    this.bytes += chunk.length;
    this.#idle.refresh();
    done(null, chunk);
  }

  override _flush(done: () => void): void {
    clearTimeout(this.#idle);
    done();
  }
}

function message(error: unknown): string {
  const cause =
    error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return error instanceof Error ? `${error.message}${cause}` : String(error);
}
