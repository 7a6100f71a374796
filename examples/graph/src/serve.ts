// The graph as a long-running service (a Deployment's): each POST /invoke runs it once, on its
// own thread, and answers with that run's JSON summary (200 when ok, 500 with a finding).
import { createServer, type Server } from "node:http";
import { runGraph } from "./graph.ts";

export interface ServeOptions {
  env: NodeJS.ProcessEnv;
  log?: (line: string) => void;
}

export function serveGraph({ env, log = () => {} }: ServeOptions): Server {
  let invocations = 0;
  return createServer((req, res) => {
    if (req.method !== "POST" || req.url !== "/invoke") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(`${JSON.stringify({ error: "POST /invoke runs the graph" })}\n`);
      return;
    }
    const thread = `${env.LGJIT_RUN ?? "served"}-${++invocations}`;
    const abort = new AbortController();
    res.once("close", () => abort.abort("the caller left"));
    log(`invocation ${invocations} on thread ${thread}`);
    void runGraph({ env: { ...env, LGJIT_RUN: thread }, signal: abort.signal, log }).then(
      (summary) => {
        res.writeHead(summary.ok ? 200 : 500, { "content-type": "application/json" });
        res.end(`${JSON.stringify(summary)}\n`);
      },
    );
  });
}
