// A stand-in for a Kubernetes Service in front of operator replicas running on loopback:
// each connection goes to the first backend that accepts it, in round-robin order.
import { connect, createServer, type Server, type Socket } from "node:net";

export interface ServiceProxy {
  port: number;
  close(): Promise<void>;
}

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

export async function startServiceProxy(backendPorts: () => number[]): Promise<ServiceProxy> {
  let next = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer(async (client) => {
    sockets.add(client);
    client.once("close", () => sockets.delete(client));
    client.pause();
    const ports = backendPorts();
    for (let i = 0; i < ports.length; i++) {
      const port = ports[(next + i) % ports.length] as number;
      try {
        const backend = await dial(port);
        next = (next + i + 1) % ports.length;
        sockets.add(backend);
        backend.once("close", () => sockets.delete(backend));
        client.pipe(backend).pipe(client);
        client.on("error", () => backend.destroy());
        backend.on("error", () => client.destroy());
        client.resume();
        return;
      } catch {
        // That replica is down: try the next, as a Service's endpoints would.
      }
    }
    client.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("proxy has no port");
  return {
    port: address.port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
