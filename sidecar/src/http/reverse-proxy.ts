// A connection's reverse proxy: the graph speaks plain HTTP to 127.0.0.1:<port>
// (LGJIT_<CONNECTION>_URL) and every request goes through the Forwarder for that connection.
// Only origin-form targets are accepted here: an absolute URL belongs to the forward proxy.
import type { Logger } from "pino";
import type { SessionRecord } from "../../../api/session-events.ts";
import type { Forwarder, HttpTarget } from "./forwarder.ts";
import { LoopbackServer } from "./loopback-server.ts";

export interface ReverseProxyOptions {
  connection: string;
  port: number;
  /** "namespace/name" of the run, for denial bodies. */
  run: string;
  /** Read per request: a refreshed credential applies at once, none fails closed. */
  target: () => HttpTarget | undefined;
  forwarder: Forwarder;
  record: (record: SessionRecord) => void;
  logger: Logger;
}

export function createReverseProxy(options: ReverseProxyOptions): LoopbackServer {
  const { connection, forwarder } = options;
  const server: LoopbackServer = new LoopbackServer({
    port: options.port,
    run: options.run,
    connection,
    record: options.record,
    onRequest: (req, res) => {
      const pathAndQuery = req.url ?? "";
      if (!pathAndQuery.startsWith("/")) {
        return server.refuseRequest(req, res, {
          status: 400,
          reason: "BadRequestTarget",
          error:
            "only origin-form request targets (a path) are accepted on a connection's port; " +
            "absolute URLs go to the forward proxy",
        });
      }
      forwarder.forward(req, res, {
        connection,
        target: options.target(),
        retarget: options.target,
        pathAndQuery,
      });
    },
  });
  return server;
}
