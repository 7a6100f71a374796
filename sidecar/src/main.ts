// The sidecar process: configuration from the environment, one logger and one metrics registry,
// the credential client, the HTTP and Postgres listeners and the admin server; SIGTERM/SIGINT
// stop it cleanly within a second.
import type { Server } from "node:http";
import { join } from "node:path";
import { pino } from "pino";
import type { SessionRecord } from "../../api/session-events.ts";
import { closeAdminServer, startAdminServer } from "./admin-server.ts";
import { ConfigError, loadConfig, type SidecarConfig } from "./config.ts";
import { CommandHolds } from "./credentials/command-holds.ts";
import { CredentialClient, type Readiness } from "./credentials/credential-client.ts";
import { OperatorClient } from "./credentials/operator-client.ts";
import { EventBuffer } from "./events/event-buffer.ts";
import { EventShipper } from "./events/event-shipper.ts";
import { HttpListeners } from "./http/http-listeners.ts";
import { createSidecarMetrics } from "./metrics.ts";
import { PostgresListeners } from "./postgres/postgres-listeners.ts";
import { createPodCa } from "./tls/pod-ca.ts";
import { writeTrustFiles } from "./tls/trust-files.ts";

// The kubelet waits terminationGracePeriodSeconds; the sidecar promises far less.
const shutdownDeadlineMs = 900;
const shutdownFlushMs = 500;

function configure(): SidecarConfig {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    pino({ base: { component: "sidecar" } }).fatal(`invalid configuration: ${error.message}`);
    process.exit(2);
  }
}

const config = configure();
const logger = pino({
  level: config.logLevel,
  base: {
    component: "sidecar",
    run: config.run,
    ...(config.namespace ? { namespace: config.namespace } : {}),
    ...(config.podName ? { pod: config.podName } : {}),
  },
});
process.on("uncaughtException", (error) => {
  logger.fatal({ err: error }, "uncaught exception");
  process.exit(1);
});
process.on("unhandledRejection", (error) => {
  logger.fatal({ err: error }, "unhandled rejection");
  process.exit(1);
});

const metrics = createSidecarMetrics();
const credentials = new CredentialClient({
  operatorUrl: config.operatorUrl,
  operatorCa: config.operatorCa,
  tokenFile: config.tokenFile,
  identity: config,
  logger,
  metrics,
});
// Every request is a session event on disk before anything else; the shipper takes them to the
// operator with the newest run JWT held (still valid for that after revocation). A tagged pod's
// sidecar records from its first credential on, which tells it its run's uid; nothing is
// served before that.
const eventsClient = new OperatorClient({ baseUrl: config.operatorUrl, ca: config.operatorCa });
let runToken: string | undefined;
let recording: { events: EventBuffer; shipper: EventShipper } | undefined;
function startRecording(runUid: string): void {
  const events = new EventBuffer({
    directory: join(config.stateDir, "events"),
    run: { namespace: config.namespace ?? "", name: config.run, uid: runUid },
  });
  const shipper = new EventShipper({
    buffer: events,
    post: (token, batch, signal) => eventsClient.postEvents(token, batch, signal),
    token: () => runToken,
    logger,
  });
  recording = { events, shipper };
  if (started) shipper.start();
}
let started = false;
if (config.runUid) startRecording(config.runUid);
credentials.subscribe((change) => {
  if (!change.credential) return;
  runToken = change.credential.token;
  if (!recording) startRecording(change.credential.claims.run.uid);
});
// Events queued for the end of the turn still reach the disk when the process exits early.
process.on("exit", () => recording?.events.flush());
function record(entry: SessionRecord): void {
  const connection = entry.connection ?? "";
  if (entry.sql)
    metrics.sqlStatements.inc({ connection, kind: entry.kind, action: entry.sql.action ?? "" });
  else
    metrics.httpRequests.inc({ connection, kind: entry.kind, status: String(entry.status ?? 0) });
  try {
    if (!recording) throw new Error("no credential was held yet, so the run is not known");
    recording.events.record(entry);
  } catch (error) {
    logger.error({ err: error, event: entry }, "a session event could not be recorded");
  }
}
// Before any listener opens: the graph starts only once the sidecar is ready, and trusts it then.
const ca = createPodCa({ name: config.podName ?? config.run });
if (config.trustDir) {
  try {
    writeTrustFiles(config.trustDir, ca);
  } catch (error) {
    logger.fatal({ err: error, dir: config.trustDir }, "cannot write the pod CA's trust files");
    process.exit(2);
  }
}
// Commands the grant holds for approval wait on the operator, asked with the run JWT held now.
const holds = new CommandHolds({
  operator: new OperatorClient({ baseUrl: config.operatorUrl, ca: config.operatorCa }),
  token: () => credentials.current()?.token,
  logger,
});
const httpListeners = new HttpListeners({
  holds,
  ports: config.listeners,
  ca,
  proxyPort: config.proxyPort,
  run: `${config.namespace ?? ""}/${config.run}`,
  credentials,
  record,
  canRecord: () => recording?.events.accepting ?? false,
  logger,
});
const postgresListeners = new PostgresListeners({
  holds,
  ports: config.listeners,
  run: `${config.namespace ?? ""}/${config.run}`,
  credentials,
  record,
  canRecord: () => recording?.events.accepting ?? false,
  logger,
});

// Ready once the credential is held and every connection it covers is listening.
function readiness(): Readiness {
  const held = credentials.readiness();
  const waiting = held.ready
    ? [...httpListeners.notListening(), ...postgresListeners.notListening()]
    : [];
  return waiting.length === 0
    ? held
    : { ready: false, reason: `${waiting.join(", ")} not listening yet` };
}

let admin: Server | undefined;
let stopping = false;
async function shutdown(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, "stopping");
  setTimeout(() => {
    logger.warn({ afterMs: shutdownDeadlineMs }, "shutdown did not finish in time; exiting");
    process.exit(0);
  }, shutdownDeadlineMs).unref();
  // No new events once the listeners are closed; then as many of the rest as time allows.
  await Promise.all([httpListeners.close(), postgresListeners.close()]);
  if (recording) {
    const { events, shipper } = recording;
    await shipper.stop();
    const flushed = await shipper.flush(shutdownFlushMs);
    if (!flushed)
      logger.warn({ pending: events.pending }, "session events left on disk for the next start");
    events.close();
  }
  await Promise.allSettled([
    credentials.stop(),
    eventsClient.close(),
    admin && closeAdminServer(admin),
  ]);
  logger.info("stopped");
  process.exit(0);
}
process.on("SIGTERM", (signal) => void shutdown(signal));
process.on("SIGINT", (signal) => void shutdown(signal));

admin = await startAdminServer({
  ...config.admin,
  registry: metrics.registry,
  readiness,
  logger,
}).catch((error: unknown) => {
  const where = `${config.admin.host}:${config.admin.port}`;
  logger.fatal(
    { err: error },
    `the admin server cannot listen on ${where} (LGJIT_ADMIN_HOST/PORT)`,
  );
  process.exit(1);
});
if (!stopping) {
  logger.info(
    { admin: `${config.admin.host}:${config.admin.port}`, operator: config.operatorUrl },
    "sidecar started",
  );
  started = true;
  recording?.shipper.start();
  credentials.start();
}
