// The sidecar's Postgres listeners, kept in step with the credential like the HTTP ones: once a
// credential is held, each Postgres connection of the grant listens on its loopback port (the
// graph's DATABASE_URL); on revocation every session gets a FATAL error naming it and closes.
import { connect as connectTcp, createServer, type Server, type Socket } from "node:net";
import { connect as connectTls } from "node:tls";
import type { Logger } from "pino";
import type { PostgresCredential } from "../../../api/credentials.ts";
import { errorMessage } from "../../../api/errors.ts";
import type { SessionRecord } from "../../../api/session-events.ts";
import type { CredentialChange, CredentialClient } from "../credentials/credential-client.ts";
import {
  CancelKeys,
  PostgresSession,
  type PostgresSessionOptions,
  type PostgresTarget,
} from "./postgres-session.ts";
import { cancelRequest, errorResponse, sslRequest } from "./protocol.ts";
import { loadParser } from "./statement-classifier.ts";
import { tlsOptions } from "./upstream.ts";

export interface PostgresListenersOptions {
  /** Loopback port by connection name (LGJIT_LISTENERS). */
  ports: Map<string, number>;
  run: string;
  credentials: Pick<CredentialClient, "current" | "subscribe">;
  record: (record: SessionRecord) => void;
  canRecord?: () => boolean;
  /** Where statements the grant holds for approval wait for their decision. */
  holds?: PostgresSessionOptions["holds"];
  logger: Logger;
  /** Sessions per listener; one more gets FATAL 53300. Default 512. */
  maxSessions?: number;
}

const defaultMaxSessions = 512;

export class PostgresListeners {
  readonly #options: PostgresListenersOptions;
  readonly #servers = new Map<string, Promise<Server | undefined>>();
  readonly #listening = new Set<string>();
  readonly #sessions = new Map<string, Set<PostgresSession>>();
  readonly #cancelKeys = new CancelKeys();
  readonly #unsubscribe: () => void;
  #closed = false;

  constructor(options: PostgresListenersOptions) {
    this.#options = options;
    this.#unsubscribe = options.credentials.subscribe((change) => void this.#sync(change));
  }

  /** Postgres connections that should listen for the held credential but do not yet. */
  notListening(): string[] {
    return this.#postgresConnections()
      .filter((name) => this.#options.ports.has(name) && !this.#listening.has(name))
      .map((name) => `connection ${name}`);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    await this.#closeAll("the sidecar is stopping");
  }

  async #sync(change: CredentialChange): Promise<void> {
    if (change.state === "revoked") return this.#closeAll("the run's credential was revoked");
    if (this.#closed || change.state !== "active") return;
    const names = this.#postgresConnections();
    if (names.length === 0) return;
    // The parser's WASM memory is paid only by runs with a Postgres connection.
    await loadParser();
    for (const name of names) {
      const port = this.#options.ports.get(name);
      if (port === undefined) {
        this.#options.logger.error(
          { connection: name },
          "LGJIT_LISTENERS names no port for this Postgres connection",
        );
        continue;
      }
      if (!this.#servers.has(name)) this.#servers.set(name, this.#listen(name, port));
    }
  }

  /** The listening server, or undefined (logged) when the port cannot be had. */
  async #listen(name: string, port: number): Promise<Server | undefined> {
    const sessions = new Set<PostgresSession>();
    this.#sessions.set(name, sessions);
    const max = this.#options.maxSessions ?? defaultMaxSessions;
    const server = createServer((socket: Socket) => {
      if (sessions.size >= max) {
        socket.on("error", () => undefined);
        socket.end(
          errorResponse({
            severity: "FATAL",
            sqlState: "53300",
            message: `connection "${name}": the sidecar holds ${max} sessions already`,
          }),
        );
        return;
      }
      const session = new PostgresSession(socket, {
        connection: name,
        run: this.#options.run,
        target: () => this.#target(name),
        record: this.#options.record,
        canRecord: this.#options.canRecord ?? (() => true),
        cancelKeys: this.#cancelKeys,
        cancelUpstream: (credential, key) => this.#cancelUpstream(name, credential, key),
        ...(this.#options.holds ? { holds: this.#options.holds } : {}),
        logger: this.#options.logger,
      });
      sessions.add(session);
      socket.once("close", () => sessions.delete(session));
      session.start().catch((error: unknown) => {
        this.#options.logger.error({ err: error, connection: name }, "a Postgres session failed");
        session.close({
          sqlState: "XX000",
          message: `connection "${name}": the sidecar failed (${errorMessage(error)})`,
        });
      });
    });
    // Accept errors (a file descriptor limit) after listening are logged, never a crash.
    server.on("error", (error) =>
      this.#options.logger.error({ err: error, connection: name }, "the Postgres listener failed"),
    );
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (error) {
      this.#options.logger.error({ err: error, connection: name, port }, "cannot listen");
      this.#servers.delete(name);
      return undefined;
    }
    this.#listening.add(name);
    this.#options.logger.info({ connection: name, listen: `127.0.0.1:${port}` }, "listening");
    return server;
  }

  // Read per statement: a refreshed credential applies to new sessions, a revoked one to all.
  #target(name: string): PostgresTarget | undefined {
    const credential = this.#options.credentials.current();
    const upstream = credential?.credentials[name];
    const grant = credential?.claims.grants.find((candidate) => candidate.connection === name);
    if (upstream?.type !== "postgres" || !grant) return undefined;
    return { credential: upstream, grant };
  }

  #postgresConnections(): string[] {
    const credential = this.#options.credentials.current();
    if (!credential) return [];
    return Object.entries(credential.credentials)
      .filter(([, upstream]) => upstream.type === "postgres")
      .map(([name]) => name);
  }

  /** A CancelRequest on a new connection to the server, encrypted when the session is. */
  #cancelUpstream(
    name: string,
    credential: PostgresCredential,
    key: { processId: number; secretKey: Buffer },
  ): void {
    const socket = connectTcp({ host: credential.host, port: credential.port });
    socket.setTimeout(10_000, () => socket.destroy());
    socket.on("error", (error) =>
      this.#options.logger.warn({ err: error, connection: name }, "cancel request failed"),
    );
    const request = cancelRequest(key.processId, key.secretKey);
    const tls = tlsOptions(credential);
    socket.once("connect", () => {
      if (!tls) {
        socket.end(request);
        return;
      }
      socket.write(sslRequest());
      socket.once("data", (answer) => {
        if (answer.toString("latin1", 0, 1) !== "S") return socket.destroy();
        const secure = connectTls({ ...tls, socket, host: credential.host });
        secure.on("error", () => socket.destroy());
        secure.once("secureConnect", () => secure.end(request));
      });
    });
  }

  async #closeAll(reason: string): Promise<void> {
    const servers = [...this.#servers.values()];
    this.#servers.clear();
    this.#listening.clear();
    for (const [name, sessions] of this.#sessions) {
      for (const session of sessions)
        session.close({ sqlState: "57P01", message: `connection "${name}": ${reason}` });
      sessions.clear();
    }
    await Promise.all(
      servers.map(async (listening) => {
        const server = await listening;
        if (server) await new Promise((resolve) => server.close(resolve));
      }),
    );
  }
}
