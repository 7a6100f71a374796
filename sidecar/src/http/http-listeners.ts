// The HTTP connections' listeners, kept in step with the credential: each HTTP connection of
// the run's grant gets its reverse proxy on its loopback port once a credential is held, and
// every listener closes when the credential is revoked (nothing answers there any more).
import type { Logger } from "pino";
import type { SessionRecord } from "../../../api/session-events.ts";
import type { CredentialChange, CredentialClient } from "../credentials/credential-client.ts";
import { type HttpTarget, ReverseProxy } from "./reverse-proxy.ts";

export interface HttpListenersOptions {
  /** Loopback port by connection name (LGJIT_LISTENERS). */
  ports: Map<string, number>;
  run: string;
  credentials: Pick<CredentialClient, "current" | "subscribe">;
  record: (record: SessionRecord) => void;
  logger: Logger;
}

export class HttpListeners {
  readonly #options: HttpListenersOptions;
  readonly #proxies = new Map<string, Promise<ReverseProxy>>();
  readonly #listening = new Set<string>();
  #closed = false;
  #unsubscribe: () => void;

  constructor(options: HttpListenersOptions) {
    this.#options = options;
    this.#unsubscribe = options.credentials.subscribe((change) => void this.#sync(change));
  }

  /** The HTTP connections of the held credential not listening yet; empty when all are. */
  notListening(): string[] {
    return this.#httpConnections().filter(
      (name) => this.#options.ports.has(name) && !this.#listening.has(name),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    await this.#closeAll();
  }

  async #sync(change: CredentialChange): Promise<void> {
    if (change.state === "revoked") return this.#closeAll();
    if (this.#closed || change.state !== "active") return;
    for (const name of this.#httpConnections()) {
      if (this.#proxies.has(name)) continue;
      const port = this.#options.ports.get(name);
      if (port === undefined) {
        this.#options.logger.error(
          { connection: name },
          "LGJIT_LISTENERS names no port for this HTTP connection",
        );
        continue;
      }
      const proxy = new ReverseProxy({
        connection: name,
        port,
        run: this.#options.run,
        target: () => this.#target(name),
        record: this.#options.record,
        logger: this.#options.logger,
      });
      const listening = proxy.listen().then(() => proxy);
      this.#proxies.set(name, listening);
      listening.then(
        () => {
          this.#listening.add(name);
          this.#options.logger.info(
            { connection: name, listen: `127.0.0.1:${port}` },
            "HTTP connection listening",
          );
        },
        (error: unknown) => {
          this.#options.logger.error(
            { err: error, connection: name, port },
            "the HTTP connection cannot listen",
          );
          this.#proxies.delete(name);
        },
      );
    }
  }

  #httpConnections(): string[] {
    const credential = this.#options.credentials.current();
    if (!credential) return [];
    return Object.entries(credential.credentials)
      .filter(([, upstream]) => upstream.type === "http")
      .map(([name]) => name);
  }

  // Read per request: a refreshed credential applies at once, an expired one fails closed.
  #target(name: string): HttpTarget | undefined {
    const credential = this.#options.credentials.current();
    const upstream = credential?.credentials[name];
    const grant = credential?.claims.grants.find((candidate) => candidate.connection === name);
    return upstream?.type === "http" && grant ? { credential: upstream, grant } : undefined;
  }

  async #closeAll(): Promise<void> {
    const proxies = [...this.#proxies.values()];
    this.#proxies.clear();
    this.#listening.clear();
    await Promise.allSettled(proxies.map(async (listening) => (await listening).close()));
  }
}
