// The forward proxy on 127.0.0.1:15000 (HTTP_PROXY/HTTPS_PROXY): a plain-HTTP request to a
// granted connection's host is enforced exactly like one on the connection's own port; CONNECT
// opens a tunnel only to a granted connection's host and port, recorded with its bytes and
// duration (nothing inside a tunnel can be checked); everything else is refused.
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import type { SessionRecord } from "../../../api/session-events.ts";
import { type Forwarder, type HttpTarget, upstreamOf } from "./forwarder.ts";
import { LoopbackServer } from "./loopback-server.ts";

export interface ForwardProxyOptions {
  port: number;
  run: string;
  /** The HTTP connections of the held credential, by name; empty while none is held. */
  targets: () => Map<string, HttpTarget>;
  /** False while no credential is held: every request fails closed with 503. */
  credentialHeld: () => boolean;
  forwarder: Forwarder;
  record: (record: SessionRecord) => void;
  logger: Logger;
}

function effectivePort(url: URL): string {
  return url.port || (url.protocol === "https:" ? "443" : "80");
}

/** The connection whose upstream is at hostname (and port, when one is given). */
function connectionAt(
  targets: Map<string, HttpTarget>,
  hostname: string,
  port: string | undefined,
): [string, HttpTarget, URL] | undefined {
  for (const [name, target] of targets) {
    const upstream = upstreamOf(target.credential).url;
    if (upstream.hostname.toLowerCase() !== hostname.toLowerCase()) continue;
    if (port !== undefined && effectivePort(upstream) !== port) continue;
    return [name, target, upstream];
  }
  return undefined;
}

export function createForwardProxy(options: ForwardProxyOptions): LoopbackServer {
  const { forwarder, record } = options;
  const server: LoopbackServer = new LoopbackServer({
    port: options.port,
    run: options.run,
    connection: "",
    record,
    onRequest: (req, res) => {
      const refuse = (status: number, reason: string, error: string, connection?: string) =>
        server.refuseRequest(req, res, {
          status,
          reason,
          error,
          ...(connection ? { connection } : {}),
        });
      let url: URL;
      try {
        url = new URL(req.url ?? "");
      } catch {
        return refuse(400, "BadRequestTarget", "the forward proxy takes absolute http:// URLs");
      }
      if (url.protocol !== "http:") {
        return refuse(
          400,
          "BadRequestTarget",
          `the forward proxy takes http:// URLs, not ${url.protocol}// (use CONNECT for TLS)`,
        );
      }
      if (!options.credentialHeld()) {
        return refuse(
          503,
          "CredentialUnavailable",
          "the sidecar holds no credential for this run; nothing is forwarded",
        );
      }
      const match = connectionAt(options.targets(), url.hostname, url.port || undefined);
      if (!match) {
        return refuse(
          403,
          "HostNotGranted",
          `${url.host} is not the host of any connection the run was granted`,
        );
      }
      const [connection, target, upstream] = match;
      // Rules are written relative to the connection's URL, as on its own port.
      const base = upstreamOf(target.credential).basePath;
      if (base && url.pathname !== base && !url.pathname.startsWith(`${base}/`)) {
        return refuse(
          403,
          "NoRuleMatched",
          `${url.pathname} is outside connection "${connection}" (${upstream.href})`,
          connection,
        );
      }
      const pathAndQuery = `${url.pathname.slice(base.length) || "/"}${url.search}`;
      forwarder.forward(req, res, { connection, target, pathAndQuery });
    },
    onConnect: (req, socket, head) => tunnel(req.url ?? "", req.method ?? "CONNECT", socket, head),
  });

  function tunnel(authority: string, method: string, socket: Duplex, head: Buffer) {
    const refuse = (status: number, reason: string, error: string) =>
      server.refuseSocket(socket, { status, reason, error, method });
    const separator = authority.lastIndexOf(":");
    const hostname = authority.slice(0, separator).replace(/^\[|\]$/g, "");
    const port = authority.slice(separator + 1);
    if (separator <= 0 || !/^\d+$/.test(port)) {
      return refuse(400, "BadRequestTarget", `CONNECT needs host:port, not "${authority}"`);
    }
    if (!options.credentialHeld()) {
      return refuse(
        503,
        "CredentialUnavailable",
        "the sidecar holds no credential for this run; nothing is forwarded",
      );
    }
    const match = connectionAt(options.targets(), hostname, port);
    if (!match) {
      return refuse(
        403,
        "HostNotGranted",
        `${authority} is not the host and port of any connection the run was granted`,
      );
    }
    const [connection] = match;
    const started = performance.now();
    const time = new Date().toISOString();
    let bytesIn = head.length;
    let bytesOut = 0;
    let established = false;
    const upstream = connect(Number(port), hostname, () => {
      established = true;
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length) upstream.write(head);
      // Counted from here on: a listener attached earlier would drop bytes sent meanwhile.
      socket.on("data", (chunk: Buffer) => {
        bytesIn += chunk.length;
      });
      upstream.on("data", (chunk: Buffer) => {
        bytesOut += chunk.length;
      });
      socket.pipe(upstream);
      upstream.pipe(socket);
    });
    let recorded = false;
    const finish = (error?: Error) => {
      socket.destroy();
      upstream.destroy();
      if (recorded) return;
      recorded = true;
      record({
        time,
        kind: "tunnel",
        connection,
        method,
        status: established ? 200 : 502,
        bytesIn,
        bytesOut,
        durationMs: Math.round(performance.now() - started),
        ...(established ? {} : { reason: "UpstreamUnavailable" }),
      });
      if (error) options.logger.debug({ err: error, connection }, "tunnel ended with an error");
    };
    upstream.on("error", (error) => {
      if (!established && socket.writable) {
        socket.end("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      }
      finish(error);
    });
    upstream.on("close", () => finish());
    socket.on("error", (error) => finish(error));
    socket.on("close", () => finish());
  }

  return server;
}
