// A TCP proxy in front of the test cluster's API server that a test can cut (connections reset,
// new ones refused) or stall (open connections go silent), to exercise recovery code.
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";

export class ApiServerProxy {
  /** The original kubeconfig with its server replaced by this proxy; TLS passes through. */
  readonly kubeConfig: KubeConfig;
  readonly #server: Server;
  readonly #connections = new Set<{ client: Socket; upstream: Socket; stalled: boolean }>();
  #refusing = false;
  #openedSinceStall = 0;

  private constructor(server: Server, kubeConfig: KubeConfig) {
    this.#server = server;
    this.kubeConfig = kubeConfig;
  }

  static async start(original: KubeConfig): Promise<ApiServerProxy> {
    const serverUrl = original.getCurrentCluster()?.server;
    if (!serverUrl) throw new Error("the kubeconfig names no server to proxy");
    const target = new URL(serverUrl);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("proxy not listening");

    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromOptions({
      clusters: original.getClusters().map((cluster) => ({
        ...cluster,
        server: `https://127.0.0.1:${address.port}`,
      })),
      users: original.getUsers(),
      contexts: original.getContexts(),
      currentContext: original.getCurrentContext(),
    });
    const proxy = new ApiServerProxy(server, kubeConfig);
    server.on("connection", (client) => proxy.#accept(client, target));
    return proxy;
  }

  /** Resets every open connection and refuses new ones, as an unreachable API server would. */
  cut(): void {
    this.#refusing = true;
    for (const { client, upstream } of this.#connections) {
      client.resetAndDestroy();
      upstream.destroy();
    }
  }

  restore(): void {
    this.#refusing = false;
  }

  /** Open connections stay open but carry nothing more, like a half-dead NAT entry. */
  stall(): void {
    this.#openedSinceStall = 0;
    for (const connection of this.#connections) connection.stalled = true;
  }

  /** Connections opened since the last stall(): only these can carry anything new. */
  get openedSinceStall(): number {
    return this.#openedSinceStall;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  #accept(client: Socket, target: URL): void {
    if (this.#refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = tcpConnect(Number(target.port || 443), target.hostname);
    this.#openedSinceStall++;
    const connection = { client, upstream, stalled: false };
    this.#connections.add(connection);
    client.on("data", (chunk) => connection.stalled || upstream.write(chunk));
    upstream.on("data", (chunk) => connection.stalled || client.write(chunk));
    const close = () => {
      this.#connections.delete(connection);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on("error", close);
      socket.on("close", close);
    }
  }
}
