// The sidecar's HTTP listeners, kept in step with the credential: once one is held, each HTTP
// connection of the grant gets its reverse proxy on its loopback port and the forward proxy
// opens; when the credential is revoked every listener closes (nothing answers there any more).
import type { Logger } from "pino";
import type { SessionRecord } from "../../../api/session-events.ts";
import type { CommandHolds } from "../credentials/command-holds.ts";
import type { CredentialChange, CredentialClient } from "../credentials/credential-client.ts";
import type { VerifiedCredential } from "../credentials/run-token-verifier.ts";
import type { PodCa } from "../tls/pod-ca.ts";
import { createForwardProxy } from "./forward-proxy.ts";
import { Forwarder, type HttpTarget } from "./forwarder.ts";
import type { LoopbackServer } from "./loopback-server.ts";
import { createReverseProxy } from "./reverse-proxy.ts";

export interface HttpListenersOptions {
  /** Loopback port by connection name (LGJIT_LISTENERS). */
  ports: Map<string, number>;
  /** The forward proxy's port (LGJIT_PROXY_PORT). */
  proxyPort: number;
  run: string;
  credentials: Pick<CredentialClient, "current" | "subscribe">;
  /** Where requests the grant holds for approval wait for a decision. */
  holds?: Pick<CommandHolds, "decide">;
  record: (record: SessionRecord) => void;
  canRecord?: () => boolean;
  /** The pod's CA, for the forward proxy's intercepted https connections. */
  ca: PodCa;
  logger: Logger;
}

/** The forward proxy's key among the listeners (no connection has an empty name). */
const forwardProxy = "";

export class HttpListeners {
  readonly #options: HttpListenersOptions;
  readonly #forwarder: Forwarder;
  readonly #servers = new Map<string, Promise<LoopbackServer>>();
  readonly #listening = new Set<string>();
  readonly #targetsOf = new WeakMap<VerifiedCredential, Map<string, HttpTarget>>();
  readonly #unsubscribe: () => void;
  #closed = false;

  constructor(options: HttpListenersOptions) {
    this.#options = options;
    this.#forwarder = new Forwarder(options);
    this.#unsubscribe = options.credentials.subscribe((change) => void this.#sync(change));
  }

  /** What should listen for the held credential but does not yet; empty when all do. */
  notListening(): string[] {
    if (!this.#options.credentials.current()) return [];
    const wanted = [
      forwardProxy,
      ...this.#httpConnections().filter((name) => this.#options.ports.has(name)),
    ];
    return wanted
      .filter((name) => !this.#listening.has(name))
      .map((name) => (name === forwardProxy ? "the forward proxy" : `connection ${name}`));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    await this.#closeAll();
    await this.#forwarder.close();
  }

  async #sync(change: CredentialChange): Promise<void> {
    if (change.state === "revoked") return this.#closeAll();
    if (this.#closed || change.state !== "active") return;
    this.#open(forwardProxy, this.#options.proxyPort, () =>
      createForwardProxy({
        port: this.#options.proxyPort,
        run: this.#options.run,
        targets: () => this.#targets(),
        credentialHeld: () => this.#options.credentials.current() !== undefined,
        forwarder: this.#forwarder,
        ca: this.#options.ca,
        record: this.#options.record,
        logger: this.#options.logger,
      }),
    );
    for (const name of this.#httpConnections()) {
      const port = this.#options.ports.get(name);
      if (port === undefined) {
        this.#options.logger.error(
          { connection: name },
          "LGJIT_LISTENERS names no port for this HTTP connection",
        );
        continue;
      }
      this.#open(name, port, () =>
        createReverseProxy({
          connection: name,
          port,
          run: this.#options.run,
          target: () => this.#targets().get(name),
          forwarder: this.#forwarder,
          record: this.#options.record,
          logger: this.#options.logger,
        }),
      );
    }
  }

  #open(name: string, port: number, create: () => LoopbackServer): void {
    if (this.#servers.has(name)) return;
    const server = create();
    const listening = server.listen().then(() => server);
    this.#servers.set(name, listening);
    const what = name === forwardProxy ? { proxy: "forward" } : { connection: name };
    listening.then(
      () => {
        this.#listening.add(name);
        this.#options.logger.info({ ...what, listen: `127.0.0.1:${port}` }, "listening");
      },
      (error: unknown) => {
        this.#options.logger.error({ err: error, ...what, port }, "cannot listen");
        this.#servers.delete(name);
      },
    );
  }

  #httpConnections(): string[] {
    return [...this.#targets().keys()];
  }

  // Read per request: a refreshed credential applies at once, an expired one fails closed.
  #targets(): Map<string, HttpTarget> {
    const credential = this.#options.credentials.current();
    if (!credential) return new Map();
    let targets = this.#targetsOf.get(credential);
    if (!targets) {
      targets = new Map();
      for (const [name, upstream] of Object.entries(credential.credentials)) {
        const grant = credential.claims.grants.find((candidate) => candidate.connection === name);
        if (upstream.type === "http" && grant) targets.set(name, { credential: upstream, grant });
      }
      this.#targetsOf.set(credential, targets);
    }
    return targets;
  }

  async #closeAll(): Promise<void> {
    const servers = [...this.#servers.values()];
    this.#servers.clear();
    this.#listening.clear();
    await Promise.allSettled(servers.map(async (listening) => (await listening).close()));
  }
}
