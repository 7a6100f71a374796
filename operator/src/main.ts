// The operator process: webhooks and health on every replica, the run reconciler on the
// replica holding the Lease.
import type { Logger } from "pino";
import { createWebhookServer } from "./admission/webhook-server.ts";
import { ConfigError, type OperatorConfig, parseConfig, usage } from "./config.ts";
import { nothingIssuedYet } from "./credentials/revoker.ts";
import { startHealthServer } from "./health.ts";
import { applyWebhookConfigurations, install, webhookCertificates } from "./install.ts";
import { loadKubeConfig } from "./kube/kube-config.ts";
import { LeaderElector } from "./kube/leader-election.ts";
import { createLogger } from "./log.ts";
import { createMetrics } from "./metrics.ts";
import { RunReconciler } from "./runs/reconciler.ts";

async function run(config: OperatorConfig, logger: Logger): Promise<void> {
  const kc = loadKubeConfig(config.kubeconfig);
  const metrics = createMetrics();

  // Every replica serves admission with the one certificate all replicas share.
  const certificates = webhookCertificates(kc, config, logger);
  const tls = await certificates.ensure();
  await applyWebhookConfigurations(kc, config, tls);
  const webhooks = createWebhookServer({
    tls,
    sidecarUid: config.sidecarUid,
    logger: logger.child({ component: "webhooks" }),
    metrics,
  });
  const stopWatchingTls = certificates.watch((material) => {
    // The API server must trust the new CA before the server presents a certificate from it.
    applyWebhookConfigurations(kc, config, material)
      .then(() => webhooks.setSecureContext({ cert: material.certPem, key: material.keyPem }))
      .catch((error: unknown) =>
        logger.error({ err: error }, "could not roll the webhook certificate"),
      );
  });
  await new Promise<void>((resolve) =>
    webhooks.listen(config.listen.port, config.listen.host, resolve),
  );
  logger.info({ address: webhooks.address() }, "serving admission webhooks");

  const reconciler = new RunReconciler({ kc, config, logger, metrics, revoker: nothingIssuedYet });
  await reconciler.sync();
  let ready = false;
  const health = await startHealthServer(config.metricsListen, metrics.registry, () => ready);

  let elector: LeaderElector | undefined;
  let shuttingDown = false;
  const startReconciling = () => {
    metrics.isLeader.set(1);
    reconciler.reconcile();
  };
  if (config.leaderElection) {
    elector = new LeaderElector({
      kc,
      namespace: config.namespace,
      name: config.leaseName,
      identity: config.identity,
      logger: logger.child({ component: "leader-election" }),
      onStartedLeading: startReconciling,
      // Reconciling on after losing the Lease could let two replicas act: exit, and restart clean.
      onStoppedLeading: () => {
        metrics.isLeader.set(0);
        if (shuttingDown) return;
        logger.error("lost the leader Lease; exiting");
        process.exit(1);
      },
    });
    elector.start();
  } else {
    startReconciling();
  }
  ready = true;
  logger.info({ metrics: health.address() }, "operator ready");

  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, "shutting down");
    stopWatchingTls();
    await reconciler.stop();
    await elector?.stop();
    webhooks.close();
    health.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

async function main(): Promise<void> {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    process.stdout.write(usage);
    return;
  }
  let config: OperatorConfig;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`error: ${error.message}\n\n${usage}`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel, { replica: config.identity });
  try {
    if (config.command === "install") await install(config, logger);
    else await run(config, logger);
  } catch (error) {
    logger.fatal({ err: error }, "operator failed");
    process.exit(1);
  }
}

await main();
