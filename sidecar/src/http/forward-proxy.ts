// The forward proxy on 127.0.0.1:15000 (HTTP_PROXY/HTTPS_PROXY): a plain-HTTP request to a
// granted connection's host is enforced exactly like one on the connection's own port. CONNECT
// to a granted connection's host and port is intercepted, never tunnelled blind: for an https
// connection the sidecar terminates TLS with a certificate from the pod's CA (which the graph
// trusts through SSL_CERT_FILE and kin), and every request inside takes the same path as on the
// connection's port: rules, credential, masking, events. Everything else is refused.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { SessionRecord } from "../../../api/session-events.ts";
import type { PodCa } from "../tls/pod-ca.ts";
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
  /** Issues the certificates of intercepted https connections. */
  ca: PodCa;
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

/** Where an intercepted CONNECT leads: requests inside it are for this origin. */
interface Tunnel {
  origin: string;
}

export function createForwardProxy(options: ForwardProxyOptions): LoopbackServer {
  const { forwarder, record } = options;
  const tunnels = new WeakMap<object, Tunnel>();
  const server: LoopbackServer = new LoopbackServer({
    port: options.port,
    run: options.run,
    connection: "",
    record,
    onRequest: (req, res) => {
      const tunnel = tunnels.get(req.socket);
      if (!tunnel) return forwardAbsolute(req, res);
      if (!req.url?.startsWith("/")) {
        return refuse(
          req,
          res,
          400,
          "BadRequestTarget",
          "inside a CONNECT tunnel, only a path is taken as the request target",
        );
      }
      forwardTo(req, res, new URL(`${tunnel.origin}${req.url}`));
    },
    onConnect: (req, socket, head) => intercept(req, socket as Socket, head),
  });

  function refuse(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    reason: string,
    error: string,
    connection?: string,
  ): void {
    server.refuseRequest(req, res, {
      status,
      reason,
      error,
      ...(connection ? { connection } : {}),
    });
  }

  function forwardAbsolute(req: IncomingMessage, res: ServerResponse) {
    let url: URL;
    try {
      url = new URL(req.url ?? "");
    } catch {
      return refuse(
        req,
        res,
        400,
        "BadRequestTarget",
        "the forward proxy takes absolute http:// URLs",
      );
    }
    if (url.protocol !== "http:") {
      return refuse(
        req,
        res,
        400,
        "BadRequestTarget",
        `the forward proxy takes http:// URLs, not ${url.protocol}// (use CONNECT for TLS)`,
      );
    }
    forwardTo(req, res, url);
  }

  /** The one path of every request the forward proxy takes, in a tunnel or not. */
  function forwardTo(req: IncomingMessage, res: ServerResponse, url: URL) {
    if (!options.credentialHeld()) {
      return refuse(
        req,
        res,
        503,
        "CredentialUnavailable",
        "the sidecar holds no credential for this run; nothing is forwarded",
      );
    }
    const match = connectionAt(options.targets(), url.hostname, url.port || undefined);
    if (!match) {
      return refuse(
        req,
        res,
        403,
        "HostNotGranted",
        `${url.origin} is not the origin of any connection the run was granted`,
      );
    }
    const [connection, target, upstream] = match;
    // Rules are written relative to the connection's URL, as on its own port.
    const base = upstreamOf(target.credential).basePath;
    if (base && url.pathname !== base && !url.pathname.startsWith(`${base}/`)) {
      return refuse(
        req,
        res,
        403,
        "NoRuleMatched",
        `${url.pathname} is outside connection "${connection}" (${upstream.href})`,
        connection,
      );
    }
    const pathAndQuery = `${url.pathname.slice(base.length) || "/"}${url.search}`;
    const retarget = () => options.targets().get(connection);
    forwarder.forward(req, res, { connection, target, retarget, pathAndQuery });
  }

  function intercept(req: IncomingMessage, socket: Socket, head: Buffer) {
    const authority = req.url ?? "";
    const method = req.method ?? "CONNECT";
    const refuseTunnel = (status: number, reason: string, error: string) =>
      server.refuseSocket(socket, { status, reason, error, method });
    const separator = authority.lastIndexOf(":");
    const hostname = authority.slice(0, separator).replace(/^\[|\]$/g, "");
    const port = authority.slice(separator + 1);
    if (separator <= 0 || !/^\d+$/.test(port)) {
      return refuseTunnel(400, "BadRequestTarget", `CONNECT needs host:port, not "${authority}"`);
    }
    if (!options.credentialHeld()) {
      return refuseTunnel(
        503,
        "CredentialUnavailable",
        "the sidecar holds no credential for this run; nothing is forwarded",
      );
    }
    const match = connectionAt(options.targets(), hostname, port);
    if (!match) {
      return refuseTunnel(
        403,
        "HostNotGranted",
        `${authority} is not the host and port of any connection the run was granted`,
      );
    }
    const [connection, , upstream] = match;
    let secureContext: ReturnType<PodCa["secureContextFor"]> | undefined;
    if (upstream.protocol === "https:") {
      try {
        secureContext = options.ca.secureContextFor(upstream.hostname);
      } catch (error) {
        options.logger.error(
          { err: error, connection },
          "cannot issue a certificate for the connection's host",
        );
        return refuseTunnel(
          502,
          "CertificateUnavailable",
          `the sidecar cannot present a certificate for ${upstream.hostname}`,
        );
      }
    }
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length) socket.unshift(head);
    const tunnel = { origin: upstream.origin };
    if (!secureContext) {
      // Plain HTTP inside the tunnel: parsed and enforced request by request all the same.
      tunnels.set(socket, tunnel);
      server.serve(socket);
      return;
    }
    const tls = new TLSSocket(socket, {
      isServer: true,
      secureContext,
      ALPNProtocols: ["http/1.1"],
    });
    tunnels.set(tls, tunnel);
    // The http server let go of the CONNECT's socket: its errors (a reset) end the tunnel here.
    socket.on("error", () => tls.destroy());
    let secured = false;
    tls.on("error", (error) => {
      // Most often the graph does not trust the pod's CA (SSL_CERT_FILE not used).
      if (!secured) {
        record({
          time: new Date().toISOString(),
          kind: "error",
          connection,
          method,
          reason: "TlsHandshakeFailed",
        });
      }
      options.logger.debug({ err: error, connection }, "intercepted TLS failed");
      tls.destroy();
    });
    tls.once("secure", () => {
      secured = true;
      server.serve(tls);
    });
  }

  return server;
}
