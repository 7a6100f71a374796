// The one path every proxied HTTP request takes, whichever listener received it: the grant
// decides on the normalized path, the graph's credential and hop-by-hop headers are dropped,
// the connection's credential is added, and the bodies stream through a keep-alive pool to
// the upstream over verified TLS. Denied requests never reach the upstream; all are recorded.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Logger } from "pino";
import { Pool } from "undici";
import type { GrantClaim, HttpCredential } from "../../../api/credentials.ts";
import type { SessionRecord } from "../../../api/session-events.ts";
import type { JsonMasker } from "../masking/json-masker.ts";
import { answerJson } from "./loopback-server.ts";
import { isJson, MaskingRefusal, maskerFor, sendMasked } from "./masked-response.ts";
import { normalizePath } from "./request-path.ts";
import { compileHttpPolicy, type HttpPolicy } from "./rules.ts";

/** A connection's upstream, parsed once per credential (never per request). */
export interface Upstream {
  url: URL;
  /** The URL's path without trailing slashes; forwarded paths are appended to it. */
  basePath: string;
  /** One keep-alive pool per origin and CA: a refreshed credential shares it. */
  poolKey: string;
}

const upstreams = new WeakMap<HttpCredential, Upstream>();

export function upstreamOf(credential: HttpCredential): Upstream {
  let upstream = upstreams.get(credential);
  if (!upstream) {
    const url = new URL(credential.url);
    upstream = {
      url,
      basePath: url.pathname.replace(/\/+$/, ""),
      poolKey: `${url.origin}\n${credential.caPem ?? ""}`,
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
  /** The request target's path and query, origin-form ("/v1/docs?q=1"). */
  pathAndQuery: string;
}

export interface ForwarderOptions {
  run: string;
  record: (record: SessionRecord) => void;
  /** False while events cannot be recorded (the buffer is full): nothing is forwarded then. */
  canRecord?: () => boolean;
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
// The graph's own credentials and claims about the route: the sidecar sets these itself.
const neverFromGraph = new Set([
  "authorization",
  "host",
  "via",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
]);

export class Forwarder {
  readonly #options: ForwarderOptions;
  readonly #pools = new Map<string, Pool>();
  readonly #policies = new WeakMap<GrantClaim, HttpPolicy>();
  readonly #maskers = new WeakMap<GrantClaim, { make: (() => JsonMasker) | undefined }>();

  constructor(options: ForwarderOptions) {
    this.#options = options;
  }

  async forward(req: IncomingMessage, res: ServerResponse, request: ForwardRequest): Promise<void> {
    const started = performance.now();
    const time = new Date().toISOString();
    const method = req.method ?? "";
    const { connection, target } = request;
    const record = (fields: Omit<SessionRecord, "time" | "connection" | "method">) =>
      this.#options.record({
        time,
        connection,
        method,
        durationMs: Math.round((performance.now() - started) * 1000) / 1000,
        ...fields,
      });
    const deny = (
      status: number,
      reason: string,
      error: string,
      fields: { path?: string } = {},
    ) => {
      // Recorded first: a kill between the two must not leave a refusal the graph saw unrecorded.
      record({ kind: "denied", status, reason, ...fields });
      answerJson(res, status, { error, run: this.#options.run, connection, rule: null, reason });
      req.resume();
    };

    if (!target) {
      return deny(
        503,
        "CredentialUnavailable",
        "the sidecar holds no credential for this run; nothing is forwarded",
      );
    }
    if (this.#options.canRecord && !this.#options.canRecord()) {
      return deny(
        503,
        "EventBufferFull",
        "session events cannot be recorded right now, so nothing is forwarded",
      );
    }
    const queryAt = request.pathAndQuery.indexOf("?");
    const rawPath = queryAt === -1 ? request.pathAndQuery : request.pathAndQuery.slice(0, queryAt);
    const normalized = normalizePath(rawPath);
    if (!normalized.ok)
      return deny(400, "BadPath", `the request path was refused: ${normalized.reason}`);
    const path = normalized.path;
    const decision = this.#policy(target.grant).decide(method, path);
    if (!decision.allowed) return deny(403, decision.reason, decision.message, { path });

    const upstream = upstreamOf(target.credential);
    const query = queryAt === -1 ? "" : request.pathAndQuery.slice(queryAt);
    // Only a request with a body pays for a counting stream.
    const bytesIn = hasBody(req) ? new ByteCounter() : undefined;
    let bytesOut = 0;
    const masker = this.#masker(target.grant);
    const aborted = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) aborted.abort(new Error("the graph closed the connection"));
    });
    try {
      const answer = await this.#pool(target.credential, upstream).request({
        method,
        path: `${upstream.basePath}${normalized.encoded}${query}`,
        headers: upstreamHeaders(req, target.credential, upstream.url, masker !== undefined),
        body: bytesIn ? req.pipe(bytesIn) : null,
        signal: aborted.signal,
      });
      const status = answer.statusCode;
      if (masker && carriesBody(method, status) && isJson(answer.headers)) {
        const masked = await sendMasked(
          status,
          responseHeaders(answer.headers),
          answer.body,
          res,
          masker(),
        );
        const counts = Object.values(masked.counts).reduce((sum, count) => sum + (count ?? 0), 0);
        record({
          kind: counts > 0 ? "masked" : "request",
          path,
          status,
          rule: decision.rule,
          bytesIn: bytesIn?.bytes ?? 0,
          bytesOut: masked.bytesOut,
          ...(counts > 0 ? { masked: masked.counts as Record<string, number> } : {}),
        });
        return;
      }
      res.writeHead(status, responseHeaders(answer.headers));
      answer.body.on("data", (chunk: Buffer) => {
        bytesOut += chunk.length;
      });
      await pipeline(answer.body, res);
      record({
        kind: "request",
        path,
        status,
        rule: decision.rule,
        bytesIn: bytesIn?.bytes ?? 0,
        bytesOut,
      });
    } catch (error) {
      const graphLeft = aborted.signal.aborted;
      const reason =
        error instanceof MaskingRefusal
          ? error.reason
          : graphLeft
            ? "GraphDisconnected"
            : "UpstreamUnavailable";
      if (!res.headersSent) {
        answerJson(res, 502, {
          error:
            error instanceof MaskingRefusal
              ? `${error.message}; the response was withheld`
              : `the upstream ${upstream.url.origin} could not be reached: ${message(error)}`,
          run: this.#options.run,
          connection,
          rule: decision.rule,
          reason,
        });
      } else {
        res.destroy();
      }
      req.resume();
      record({
        kind: "error",
        path,
        status: res.statusCode,
        reason,
        rule: decision.rule,
        bytesIn: bytesIn?.bytes ?? 0,
        bytesOut,
      });
      this.#options.logger.debug({ err: error, connection, path }, "upstream request failed");
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#pools.values()].map((pool) => pool.destroy()));
    this.#pools.clear();
  }

  #masker(grant: GrantClaim): (() => JsonMasker) | undefined {
    let entry = this.#maskers.get(grant);
    if (!entry) {
      entry = { make: maskerFor(grant.masking) };
      this.#maskers.set(grant, entry);
    }
    return entry.make;
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
      pool = new Pool(upstream.url.origin, {
        connections: 64,
        connect: credential.caPem ? { ca: credential.caPem } : {},
      });
      this.#pools.set(upstream.poolKey, pool);
    }
    return pool;
  }
}

/** The graph's headers minus hop-by-hop and credential headers, plus the connection's own. */
function upstreamHeaders(
  req: IncomingMessage,
  credential: HttpCredential,
  upstream: URL,
  masked: boolean,
): Record<string, string | string[]> {
  const listed = namedByConnection(req.headers);
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || hopByHop.has(name) || listed.has(name)) continue;
    if (neverFromGraph.has(name) || name in credential.headers) continue;
    headers[name] = value;
  }
  if (masked) {
    // A masked body must arrive whole and readable: no ranges, and plain if the upstream obliges.
    for (const name of ["range", "if-range", "accept-encoding"]) delete headers[name];
    headers["accept-encoding"] = "identity";
  }
  headers.via = "1.1 langgraph-jit";
  const host = String(req.headers.host ?? upstream.host).replace(/["\\]/g, "");
  headers.forwarded = `proto=http;host="${host}"`;
  return { ...headers, ...credential.headers };
}

function responseHeaders(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const listed = namedByConnection(headers);
  const result: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || hopByHop.has(name) || listed.has(name)) continue;
    result[name] = value;
  }
  result.via = result.via ? `${result.via}, 1.1 langgraph-jit` : "1.1 langgraph-jit";
  return result;
}

/** Headers a Connection header lists are hop-by-hop too. */
function namedByConnection(headers: Record<string, string | string[] | undefined>): Set<string> {
  return new Set(
    String(headers.connection ?? "")
      .split(",")
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
}

/** Whether a response to method with status has a body at all (RFC 9110 6.4.1). */
function carriesBody(method: string, status: number): boolean {
  return method !== "HEAD" && status >= 200 && status !== 204 && status !== 304;
}

function hasBody(req: IncomingMessage): boolean {
  return (
    req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0
  );
}

/** Passes bytes through and counts them (request and response body sizes for the record). */
class ByteCounter extends Transform {
  bytes = 0;
  override _transform(
    chunk: Buffer,
    _encoding: BufferEncoding,
    done: (error?: Error | null, data?: Buffer) => void,
  ): void {
    this.bytes += chunk.length;
    done(null, chunk);
  }
}

function message(error: unknown): string {
  const cause =
    error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return error instanceof Error ? `${error.message}${cause}` : String(error);
}
