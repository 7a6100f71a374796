// The operator's one HTTPS server: admission webhooks and the sidecar credential API share it,
// its certificate and its error handling. Every replica serves it.
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { SecureContextOptions } from "node:tls";
import type { Logger } from "pino";

/** A refusal with the HTTP status and a stable reason callers can branch on. */
export class HttpError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.reason = reason;
  }
}

export interface JsonAnswer {
  status: number;
  body: unknown;
}

export interface Route {
  method: "GET" | "POST";
  /** The signal aborts when the client goes away (long polls stop waiting). */
  handle(request: IncomingMessage, url: URL, signal: AbortSignal): Promise<JsonAnswer>;
}

export interface ServerTls {
  certPem: string;
  keyPem: string;
  /** CA of the client certificates to verify (the API server's front proxy); none: no client is. */
  clientCaPem?: string;
}

export interface ApiServerOptions {
  tls: ServerTls;
  /** By exact path; a key ending in "/" serves that path and everything under it. */
  routes: Record<string, Route>;
  logger: Logger;
}

/** Reads a request body up to maxBytes; a larger one is a 413, never buffered whole. */
export async function readBody(request: IncomingMessage, maxBytes: number): Promise<string> {
  const declared = Number(request.headers["content-length"]);
  if (declared > maxBytes) {
    throw new HttpError(413, "BadRequest", `request body exceeds ${maxBytes} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      throw new HttpError(413, "BadRequest", `request body exceeds ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** The TLS context for the server: a client certificate is asked for, never required. */
export function secureContextOf(tls: ServerTls): SecureContextOptions {
  return {
    cert: tls.certPem,
    key: tls.keyPem,
    // Without one Node verifies against public roots: the front-proxy check then refuses all.
    ...(tls.clientCaPem ? { ca: tls.clientCaPem } : {}),
  };
}

function routeOf(routes: Record<string, Route>, path: string): Route | undefined {
  if (Object.hasOwn(routes, path)) return routes[path];
  const subtree = Object.keys(routes).find(
    (key) => key.endsWith("/") && `${path}/`.startsWith(key),
  );
  return subtree ? routes[subtree] : undefined;
}

export function createApiServer(options: ApiServerOptions): Server {
  const { logger, routes } = options;
  const server = createServer(
    {
      ...secureContextOf(options.tls),
      minVersion: "TLSv1.2",
      requestCert: true,
      rejectUnauthorized: false,
    },
    (request, response) => void serve(request, response),
  );
  // Never throws: every failure becomes an answer, so no request can crash the process.
  async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const aborted = new AbortController();
    response.on("close", () => aborted.abort());
    let answer: JsonAnswer;
    let path = "";
    try {
      const url = URL.parse(request.url ?? "/", "https://operator");
      if (!url) throw new HttpError(400, "BadRequest", "the request target is not a valid URL");
      path = url.pathname;
      const route = routeOf(routes, path);
      if (!route) throw new HttpError(404, "NotFound", `no handler for ${path}`);
      if (request.method !== route.method) {
        throw new HttpError(405, "MethodNotAllowed", `${path} takes ${route.method}`);
      }
      answer = await route.handle(request, url, aborted.signal);
    } catch (error) {
      if (error instanceof HttpError) {
        answer = { status: error.status, body: { error: error.message, reason: error.reason } };
      } else {
        logger.error({ err: error, path }, "request failed");
        answer = { status: 500, body: { error: "internal error", reason: "Internal" } };
      }
    }
    if (response.destroyed || response.headersSent) return;
    response.writeHead(answer.status, {
      "content-type": "application/json",
      "cache-control": "no-store",
    });
    response.end(JSON.stringify(answer.body));
  }
  // A slow or silent client must not hold a socket forever; long polls stay under this.
  server.requestTimeout = 60_000;
  server.headersTimeout = 10_000;
  server.on("tlsClientError", (error) => logger.debug({ err: error }, "TLS handshake failed"));
  return server;
}
