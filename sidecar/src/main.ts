// The sidecar process: configuration from the environment, one logger and one metrics registry,
// the credential client and the admin server; SIGTERM/SIGINT stop it cleanly within a second.
import type { Server } from "node:http";
import { pino } from "pino";
import { closeAdminServer, startAdminServer } from "./admin-server.ts";
import { ConfigError, loadConfig, type SidecarConfig } from "./config.ts";
import { CredentialClient, type Readiness } from "./credentials/credential-client.ts";
import { HttpListeners } from "./http/http-listeners.ts";
import { createSidecarMetrics } from "./metrics.ts";

// The kubelet waits terminationGracePeriodSeconds; the sidecar promises far less.
const shutdownDeadlineMs = 900;

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
// Until session events ship to the operator, each request is one structured log line.
const httpListeners = new HttpListeners({
  ports: config.listeners,
  proxyPort: config.proxyPort,
  run: `${config.namespace ?? ""}/${config.run}`,
  credentials,
  record: (record) => {
    metrics.httpRequests.inc({
      connection: record.connection ?? "",
      kind: record.kind,
      status: String(record.status ?? 0),
    });
    logger.info({ event: record }, "session event");
  },
  logger,
});

// Ready once the credential is held and every HTTP connection it covers is listening.
function readiness(): Readiness {
  const held = credentials.readiness();
  const waiting = held.ready ? httpListeners.notListening() : [];
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
  await Promise.allSettled([
    credentials.stop(),
    httpListeners.close(),
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
  credentials.start();
}
