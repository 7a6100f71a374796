// The operator binary: parses its configuration, then installs (the `install` command) or runs
// the process operator.ts builds until SIGTERM or SIGINT.
import { ConfigError, type OperatorConfig, parseConfig, usage } from "./config.ts";
import { install } from "./install.ts";
import { loadKubeConfig } from "./kube/kube-config.ts";
import { createLogger } from "./log.ts";
import { startOperator } from "./operator.ts";

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
    process.stderr.write(`operator: ${error.message} (operator --help lists the flags)\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel, { replica: config.identity });
  try {
    if (config.command === "install") {
      await install(config, logger);
      return;
    }
    // Reconciling on after losing the Lease could let two replicas act: exit, and restart clean.
    const operator = await startOperator(config, loadKubeConfig(config.kubeconfig), logger, () =>
      process.exit(1),
    );
    const shutdown = (signal: string) => {
      logger.info({ signal }, "shutting down");
      void operator.stop().then(() => process.exit(0));
    };
    process.once("SIGTERM", () => shutdown("SIGTERM"));
    process.once("SIGINT", () => shutdown("SIGINT"));
  } catch (error) {
    logger.fatal({ err: error }, "operator failed");
    process.exit(1);
  }
}

await main();
