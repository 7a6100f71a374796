// The sidecars' session-event ingest: a batch signed by the run's token (still accepted a day
// past its expiry, since a sidecar's last events may arrive after its run ended), checked,
// stored once per (run, seq) and acknowledged up to its highest sequence number.
import { credentialApi } from "../../../api/credentials.ts";
import { maxBatchBytes, type SessionEventsAck } from "../../../api/session-events.ts";
import { bearerToken, type RunTokenVerify } from "../credentials/run-token.ts";
import { HttpError, type Route, readBody } from "../server/https-server.ts";
import { countedRequest, type OperatorMetrics } from "../server/metrics.ts";
import { parseEventsBatch } from "./events-batch.ts";
import type { SessionStatus } from "./session-status.ts";
import type { SessionStore } from "./session-store.ts";

const eventsGraceSeconds = 24 * 3600;

export interface IngestRoutesOptions {
  verify: RunTokenVerify;
  store: SessionStore;
  status: SessionStatus;
  metrics: OperatorMetrics;
}

export function ingestRoutes(options: IngestRoutesOptions): Record<string, Route> {
  return {
    [credentialApi.events]: {
      method: "POST",
      async handle(request) {
        return countedRequest(options.metrics, "events", async () => {
          const token = await options.verify(
            bearerToken(request.headers.authorization),
            eventsGraceSeconds,
          );
          const run = { ...token.run };
          const events = parseEventsBatch(await readBody(request, maxBatchBytes + 64 * 1024), run);
          await options.store.ingest(events).catch((error: unknown) => {
            throw new HttpError(503, "Internal", "the session store is unavailable", {
              cause: error,
            });
          });
          options.status.ingested(run);
          const ack: SessionEventsAck = { ackedThrough: Math.max(...events.map((e) => e.seq)) };
          return { status: 200, body: ack };
        });
      },
    },
  };
}
