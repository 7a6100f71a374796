// A connection's reverse proxy: the graph speaks plain HTTP to 127.0.0.1:<port>; each request
// is checked against the run's grant on its normalized path, its credential headers replaced by
// the connection's, and streamed to the upstream over verified TLS through a keep-alive pool.
// Denials and malformed requests never reach the upstream; every request is recorded.
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { Socket } from "node:net";
import { type Duplex, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Logger } from "pino";
import { Pool } from "undici";
import type { GrantClaim, HttpCredential } from "../../../api/credentials.ts";
import type { SessionRecord } from "../../../api/session-events.ts";
import { normalizePath } from "./request-path.ts";
import { compileHttpPolicy, type HttpPolicy } from "./rules.ts";

/** What the proxy needs from the held credential; undefined while none is held (fail closed). */
export interface HttpTarget {
  credential: HttpCredential;
  grant: GrantClaim;
}

export interface ReverseProxyOptions {
  connection: string;
  port: number;
  /** "namespace/name" of the run, for denial bodies. */
  run: string;
  target: () => HttpTarget | undefined;
  record: (record: SessionRecord) => void;
  logger: Logger;
}

/** The JSON body of every answer the proxy gives itself (DESIGN.md section 4). */
export interface DenialBody {
  error: string;
  run: string;
  connection: string;
  rule: string | null;
  reason: string;
}

// Hop-by-hop headers (RFC 9110 7.6.1) and the graph's own credentials or forwarding claims:
// none of them is forwarded in either direction.
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
const neverFromGraph = new Set([
  "authorization",
  "host",
  "via",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
]);
const maxHeaderBytes = 16 * 1024;

export class ReverseProxy {
  readonly #options: ReverseProxyOptions;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #pools = new Map<string, Pool>();
  readonly #policies = new WeakMap<GrantClaim, HttpPolicy>();

  constructor(options: ReverseProxyOptions) {
    this.#options = options;
    this.#server = createServer(
      { maxHeaderSize: maxHeaderBytes, requestTimeout: 0, headersTimeout: 30_000 },
      (req, res) => void this.#handle(req, res),
    );
    this.#server.on("connection", (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
    this.#server.on("clientError", (error: NodeJS.ErrnoException, socket) =>
      this.#malformed(error, socket),
    );
    // Upgrades and CONNECT cannot be checked request by request: refused on a connection's port.
    this.#server.on("upgrade", (req: IncomingMessage, socket: Duplex) =>
      this.#refuseRaw(req, socket, 501, "UpgradeNotSupported", "protocol upgrades are not proxied"),
    );
    this.#server.on("connect", (req: IncomingMessage, socket: Duplex) =>
      this.#refuseRaw(
        req,
        socket,
        405,
        "ConnectNotAllowed",
        "CONNECT goes to the forward proxy, not a connection's port",
      ),
    );
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.#options.port, "127.0.0.1", () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
  }

  /** Stops listening and cuts every connection at once (the run's credential is gone). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    await Promise.allSettled([...this.#pools.values()].map((pool) => pool.destroy()));
    this.#pools.clear();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const time = new Date().toISOString();
    const method = req.method ?? "";
    const record = (fields: Omit<SessionRecord, "time" | "connection" | "method">) =>
      this.#options.record({
        time,
        connection: this.#options.connection,
        method,
        durationMs: Math.round((performance.now() - started) * 1000) / 1000,
        ...fields,
      });
    const deny = (
      status: number,
      reason: string,
      error: string,
      fields: { path?: string; rule?: string } = {},
    ) => {
      this.#answer(res, status, {
        error,
        run: this.#options.run,
        connection: this.#options.connection,
        rule: fields.rule ?? null,
        reason,
      });
      req.resume();
      record({ kind: "denied", status, reason, ...fields });
    };

    const target = this.#options.target();
    if (!target) {
      return deny(
        503,
        "CredentialUnavailable",
        "the sidecar holds no credential for this run; nothing is forwarded",
      );
    }
    const url = req.url ?? "";
    if (!url.startsWith("/")) {
      return deny(
        400,
        "BadRequestTarget",
        "only origin-form request targets (a path) are accepted on a connection's port; use the forward proxy for absolute URLs",
      );
    }
    const queryAt = url.indexOf("?");
    const normalized = normalizePath(queryAt === -1 ? url : url.slice(0, queryAt));
    if (!normalized.ok)
      return deny(400, "BadPath", `the request path was refused: ${normalized.reason}`);
    const path = normalized.path;
    const decision = this.#policy(target.grant).decide(method, path);
    if (!decision.allowed) return deny(403, decision.reason, decision.message, { path });

    const upstream = new URL(target.credential.url);
    const basePath = upstream.pathname.replace(/\/+$/, "");
    const query = queryAt === -1 ? "" : url.slice(queryAt);
    const bytesIn = new ByteCounter();
    const bytesOut = new ByteCounter();
    const aborted = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) aborted.abort(new Error("the graph closed the connection"));
    });
    try {
      const answer = await this.#pool(target.credential).request({
        method,
        path: `${basePath}${normalized.encoded}${query}`,
        headers: upstreamHeaders(req, target.credential, upstream),
        body: hasBody(req) ? req.pipe(bytesIn) : null,
        signal: aborted.signal,
      });
      res.writeHead(answer.statusCode, responseHeaders(answer.headers));
      await pipeline(answer.body, bytesOut, res);
      record({
        kind: "request",
        path,
        status: answer.statusCode,
        rule: decision.rule,
        bytesIn: bytesIn.bytes,
        bytesOut: bytesOut.bytes,
      });
    } catch (error) {
      if (!res.headersSent) {
        this.#answer(res, 502, {
          error: `the upstream ${upstream.origin} could not be reached: ${message(error)}`,
          run: this.#options.run,
          connection: this.#options.connection,
          rule: decision.rule,
          reason: "UpstreamUnavailable",
        });
      } else {
        res.destroy();
      }
      req.resume();
      record({
        kind: "error",
        path,
        status: res.headersSent ? res.statusCode : 502,
        reason: aborted.signal.aborted ? "GraphDisconnected" : "UpstreamUnavailable",
        rule: decision.rule,
        bytesIn: bytesIn.bytes,
        bytesOut: bytesOut.bytes,
      });
      this.#options.logger.debug(
        { err: error, connection: this.#options.connection, path },
        "upstream request failed",
      );
    }
  }

  #policy(grant: GrantClaim): HttpPolicy {
    let policy = this.#policies.get(grant);
    if (!policy) {
      policy = compileHttpPolicy(grant);
      this.#policies.set(grant, policy);
    }
    return policy;
  }

  // One keep-alive pool per upstream origin and CA; a refreshed credential reuses it.
  #pool(credential: HttpCredential): Pool {
    const origin = new URL(credential.url).origin;
    const key = `${origin}\n${credential.caPem ?? ""}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new Pool(origin, {
        connections: 64,
        connect: credential.caPem ? { ca: credential.caPem } : {},
      });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  #answer(res: ServerResponse, status: number, body: DenialBody): void {
    const json = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(json),
      via: "1.1 langgraph-jit",
    });
    res.end(json);
  }

  #malformed(error: NodeJS.ErrnoException, socket: Duplex): void {
    if (error.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
    this.#writeRaw(
      socket,
      status,
      "MalformedRequest",
      `the request was malformed (${error.code ?? "parse error"}); nothing was forwarded`,
    );
  }

  #refuseRaw(
    req: IncomingMessage,
    socket: Duplex,
    status: number,
    reason: string,
    error: string,
  ): void {
    const queryAt = (req.url ?? "").indexOf("?");
    const normalized = normalizePath(
      queryAt === -1 ? (req.url ?? "") : (req.url ?? "").slice(0, queryAt),
    );
    this.#writeRaw(
      socket,
      status,
      reason,
      error,
      req.method,
      normalized.ok ? normalized.path : undefined,
    );
  }

  #writeRaw(
    socket: Duplex,
    status: number,
    reason: string,
    error: string,
    method?: string,
    path?: string,
  ): void {
    const body = JSON.stringify({
      error,
      run: this.#options.run,
      connection: this.#options.connection,
      rule: null,
      reason,
    } satisfies DenialBody);
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
    this.#options.record({
      time: new Date().toISOString(),
      kind: "denied",
      connection: this.#options.connection,
      status,
      reason,
      ...(method ? { method } : {}),
      ...(path ? { path } : {}),
    });
  }
}

/** The graph's headers minus hop-by-hop and credential headers, plus the connection's own. */
function upstreamHeaders(
  req: IncomingMessage,
  credential: HttpCredential,
  upstream: URL,
): Record<string, string | string[]> {
  const listed = new Set(
    String(req.headers.connection ?? "")
      .split(",")
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || hopByHop.has(name) || listed.has(name) || neverFromGraph.has(name))
      continue;
    if (name in credential.headers) continue;
    headers[name] = value;
  }
  headers.via = "1.1 langgraph-jit";
  headers.forwarded = `proto=http;host="${String(req.headers.host ?? upstream.host).replace(/["\\]/g, "")}"`;
  return { ...headers, ...credential.headers };
}

function responseHeaders(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const listed = new Set(
    String(headers.connection ?? "")
      .split(",")
      .map((name) => name.trim().toLowerCase()),
  );
  const result: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || hopByHop.has(name) || listed.has(name)) continue;
    result[name] = value;
  }
  result.via = result.via ? `${result.via}, 1.1 langgraph-jit` : "1.1 langgraph-jit";
  return result;
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
