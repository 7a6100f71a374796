// The sidecar's admin endpoints for the kubelet and Prometheus: /ready (200 only while a
// verified, unexpired credential is held), /healthz (the process runs) and /metrics.
import type { Server } from "node:http";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Readiness } from "./credentials/credential-client.ts";
import { createServer } from "./http/create-server.ts";

export interface AdminServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  registry: Registry;
  readiness: () => Readiness;
  logger: Logger;
}

export async function startAdminServer(options: AdminServerOptions): Promise<Server> {
  const { registry, readiness, logger } = options;
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://sidecar").pathname;
    const send = (status: number, contentType: string, body: string) => {
      response.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
      response.end(request.method === "HEAD" ? undefined : body);
    };
    const json = (status: number, body: unknown) =>
      send(status, "application/json", `${JSON.stringify(body)}\n`);
    if (path !== "/ready" && path !== "/healthz" && path !== "/metrics") {
      return json(404, { error: `no endpoint ${path}; try /ready, /healthz or /metrics` });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.setHeader("allow", "GET, HEAD");
      return json(405, { error: `${request.method} is not allowed on ${path}` });
    }
    if (path === "/healthz") return json(200, { ok: true });
    if (path === "/ready") {
      const state = readiness();
      return state.ready
        ? json(200, { ready: true, expiresAt: state.expiresAt.toISOString() })
        : json(503, { ready: false, reason: state.reason });
    }
    registry.metrics().then(
      (body) => send(200, registry.contentType, body),
      (error: unknown) => {
        logger.error({ err: error }, "metrics collection failed");
        json(500, { error: "metrics collection failed" });
      },
    );
  });
  // Loopback callers are the kubelet and Prometheus: a stalled client gets dropped quickly.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}

/** Closes the server and every connection on it, idle or not. */
export function closeAdminServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
