// Plain-HTTP endpoints for the kubelet and Prometheus: /healthz, /readyz, /metrics.
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export async function startHealthServer(
  address: { host: string; port: number },
  registry: Registry,
  isReady: () => boolean,
): Promise<Server> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://operator").pathname;
    if (path === "/metrics") {
      registry.metrics().then(
        (body) => {
          response.writeHead(200, { "content-type": registry.contentType });
          response.end(body);
        },
        () => {
          response.writeHead(500);
          response.end();
        },
      );
      return;
    }
    const ok = path === "/healthz" || (path === "/readyz" && isReady());
    response.writeHead(ok ? 200 : path === "/readyz" ? 503 : 404, { "content-type": "text/plain" });
    response.end(ok ? "ok" : path === "/readyz" ? "not ready" : "not found");
  });
  await new Promise<void>((resolve) => server.listen(address.port, address.host, resolve));
  return server;
}
