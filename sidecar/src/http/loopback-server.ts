// An HTTP server on 127.0.0.1 for the graph, hardened the same way for every listener of the
// sidecar: bounded headers and connections, malformed requests (smuggling attempts and
// Host-less HTTP/1.1 included) answered with a 4xx and recorded before the socket closes,
// `Expect: 100-continue` left to the forwarder (100 only for a request it forwards), and
// close() cutting every connection at once.
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { SessionRecord } from "../../../api/session-events.ts";
import { createServer } from "./create-server.ts";

/** The JSON body of every answer the sidecar gives itself (DESIGN.md section 4). */
export interface DenialBody {
  error: string;
  run: string;
  connection: string;
  rule: string | null;
  reason: string;
}

export interface LoopbackServerOptions {
  port: number;
  run: string;
  /** The connection named in denials and records; "" for the forward proxy. */
  connection: string;
  record: (record: SessionRecord) => void;
  onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  /** CONNECT; refused when absent. */
  onConnect?: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** Connections held open at once; one more is answered 503 and closed. Default 1024. */
  maxConnections?: number;
}

const maxHeaderBytes = 16 * 1024;
const defaultMaxConnections = 1024;

/** Answers the graph with a JSON body of the contract's shape. */
export function answerJson(res: ServerResponse, status: number, body: DenialBody): void {
  const json = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(json),
    via: "1.1 langgraph-jit",
  });
  res.end(json);
}

export class LoopbackServer {
  readonly #options: LoopbackServerOptions;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  constructor(options: LoopbackServerOptions) {
    this.#options = options;
    // Node's parser refuses Content-Length with Transfer-Encoding, duplicate lengths, bad
    // header names and oversized heads; each arrives here as a clientError.
    // Node's own Host check answers unrecorded; this one records (see #onRequest).
    this.#server = createServer(
      {
        maxHeaderSize: maxHeaderBytes,
        requestTimeout: 0,
        headersTimeout: 30_000,
        requireHostHeader: false,
      },
      this.#onRequest,
    );
    // Without this listener Node answers 100 itself, before anything is decided.
    this.#server.on("checkContinue", this.#onRequest);
    this.#server.on("checkExpectation", (req: IncomingMessage, res: ServerResponse) =>
      this.refuseRequest(req, res, {
        status: 417,
        reason: "ExpectationFailed",
        error: `Expect: ${req.headers.expect} is not supported (only 100-continue is)`,
      }),
    );
    const maxConnections = options.maxConnections ?? defaultMaxConnections;
    this.#server.on("connection", (socket: Socket) => {
      if (this.#sockets.size >= maxConnections) {
        this.refuseSocket(socket, {
          status: 503,
          reason: "TooManyConnections",
          error: `the graph holds ${maxConnections} connections to this listener already`,
        });
        return;
      }
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
    this.#server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
      if (error.code === "ECONNRESET" || !socket.writable) {
        socket.destroy();
        return;
      }
      const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
      const why = `the request was malformed (${error.code ?? "parse error"}); nothing was forwarded`;
      this.refuseSocket(socket, { status, reason: "MalformedRequest", error: why });
    });
    // Upgraded protocols cannot be checked request by request.
    this.#server.on("upgrade", (req: IncomingMessage, socket: Duplex) =>
      this.refuseSocket(socket, {
        status: 501,
        reason: "UpgradeNotSupported",
        error: "protocol upgrades are not proxied",
        method: req.method,
      }),
    );
    this.#server.on("connect", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (options.onConnect) return options.onConnect(req, socket, head);
      this.refuseSocket(socket, {
        status: 405,
        reason: "ConnectNotAllowed",
        error: "CONNECT goes to the forward proxy, not a connection's port",
        method: req.method,
      });
    });
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

  readonly #onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    // RFC 9112 3.2: an HTTP/1.1 request without Host is answered 400.
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      this.refuseRequest(req, res, {
        status: 400,
        reason: "MissingHost",
        error: "an HTTP/1.1 request needs a Host header",
      });
      return;
    }
    this.#options.onRequest(req, res);
  };

  /** Serves HTTP on a socket it did not accept itself: a CONNECT tunnel's, decrypted. */
  serve(socket: Duplex): void {
    this.#server.emit("connection", socket);
  }

  /** Stops listening and cuts every connection at once. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  denial(
    error: string,
    reason: string,
    rule?: string,
    connection = this.#options.connection,
  ): DenialBody {
    return { error, run: this.#options.run, connection, rule: rule ?? null, reason };
  }

  /** Refuses a request the listener itself cannot take (before any connection's rules). */
  refuseRequest(
    req: IncomingMessage,
    res: ServerResponse,
    refusal: { status: number; reason: string; error: string; connection?: string },
  ): void {
    const connection = refusal.connection ?? this.#options.connection;
    // Recorded first: a kill between the two must not leave a refusal the graph saw unrecorded.
    this.#options.record({
      time: new Date().toISOString(),
      kind: "denied",
      connection,
      method: req.method ?? "",
      status: refusal.status,
      reason: refusal.reason,
    });
    answerJson(
      res,
      refusal.status,
      this.denial(refusal.error, refusal.reason, undefined, connection),
    );
    req.resume();
  }

  /** Answers on a raw socket (no ServerResponse exists for it), closes it and records it. */
  refuseSocket(
    socket: Duplex,
    refusal: {
      status: number;
      reason: string;
      error: string;
      method?: string;
      connection?: string;
    },
  ): void {
    const body = JSON.stringify(
      this.denial(refusal.error, refusal.reason, undefined, refusal.connection),
    );
    this.#options.record({
      time: new Date().toISOString(),
      kind: "denied",
      connection: refusal.connection ?? this.#options.connection,
      status: refusal.status,
      reason: refusal.reason,
      ...(refusal.method ? { method: refusal.method } : {}),
    });
    // Upgraded and CONNECT sockets have no listener left: a reset must not crash the sidecar.
    socket.on("error", () => socket.destroy());
    socket.end(
      `HTTP/1.1 ${refusal.status} ${refusal.reason}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
}
