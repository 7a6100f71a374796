// The operator process: webhooks, the credential API and health on every replica, the run
// run controller on the replica holding the Lease.

import {
  AuthenticationV1Api,
  AuthorizationV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { admissionRoutes } from "./admission/webhook-server.ts";
import { ConfigError, type OperatorConfig, parseConfig, usage } from "./config.ts";
import { credentialRoutes } from "./credentials/credential-api.ts";
import { CredentialIssuer } from "./credentials/credential-issuer.ts";
import { MintedTokens } from "./credentials/minted-tokens.ts";
import { closeAdminSessions } from "./credentials/postgres-roles.ts";
import { CredentialRevoker, sweepOrphans } from "./credentials/revoker.ts";
import { followingVerifier } from "./credentials/run-token.ts";
import { SigningKeys } from "./credentials/signing-keys.ts";
import { PodTokenReviewer } from "./credentials/token-review.ts";
import { UpstreamCredentials } from "./credentials/upstream-credentials.ts";
import {
  applyWebhookConfigurations,
  install,
  trustSessionsApiService,
  webhookCertificates,
} from "./install.ts";
import { unlessNotFound } from "./kube/api-errors.ts";
import { EventRecorder } from "./kube/events.ts";
import { loadKubeConfig } from "./kube/kube-config.ts";
import { LeaderElector } from "./kube/leader-election.ts";
import { createLogger } from "./log.ts";
import { RunController } from "./runs/run-controller.ts";
import { loadStatusSeal } from "./runs/status-seal.ts";
import { requesterAuthorizer } from "./runs/template-review.ts";
import { FrontProxyAuth } from "./server/front-proxy-auth.ts";
import { startHealthServer } from "./server/health.ts";
import { createApiServer, secureContextOf } from "./server/https-server.ts";
import { createMetrics } from "./server/metrics.ts";
import { ingestRoutes } from "./sessions/ingest-api.ts";
import { PostgresSessionStore } from "./sessions/postgres-store.ts";
import { sessionApiRoutes } from "./sessions/session-api.ts";
import { SessionStatus } from "./sessions/session-status.ts";
import type { SessionStore } from "./sessions/session-store.ts";
import { SqliteSessionStore } from "./sessions/sqlite-store.ts";

async function run(config: OperatorConfig, logger: Logger): Promise<void> {
  const kc = loadKubeConfig(config.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const metrics = createMetrics();

  // Every replica serves admission with the one certificate all replicas share, and signs run
  // tokens with the keys all replicas share.
  const certificates = webhookCertificates(kc, config, logger);
  let tls = await certificates.ensure();
  await applyWebhookConfigurations(kc, config, tls);
  await trustSessionsApiService(kc, config, tls);
  // The API server's front proxy, whose client certificate vouches for session API readers.
  const frontProxy = new FrontProxyAuth(core, logger.child({ component: "session-api" }));
  await frontProxy.refresh();
  const serverTls = () => ({ ...tls, clientCaPem: frontProxy.config?.caPem });
  const signingKeys = new SigningKeys({
    core,
    namespace: config.namespace,
    secretName: config.signingKeySecretName,
    logger,
  });
  await signingKeys.ensure();
  const seal = await loadStatusSeal({
    core,
    namespace: config.namespace,
    secretName: config.sealSecretName,
    logger,
  });
  const operatorUsername = await whoAmI(kc);
  const authorization = kc.makeApiClient(AuthorizationV1Api);
  const templateReview = {
    rules: { sidecarUid: config.sidecarUid, capture: config.capture },
    requesterMay: requesterAuthorizer(authorization),
  };

  const tokens = new MintedTokens(core, config.namespace);
  const upstream = new UpstreamCredentials(
    core,
    tokens,
    logger.child({ component: "credentials" }),
  );
  const runController = new RunController({
    kc,
    config,
    logger,
    metrics,
    revoker: new CredentialRevoker(upstream),
    operatorCaPem: () => tls.caBundlePem,
    seal,
    templateReview,
  });
  await runController.sync();
  const { caches } = runController;
  const issuer = new CredentialIssuer({
    kc,
    core,
    readJob: (namespace, name) => unlessNotFound(batch.readNamespacedJob({ namespace, name })),
    logger: logger.child({ component: "credentials" }),
    events: new EventRecorder(kc, config.identity, logger),
    signingKeys,
    reviewer: new PodTokenReviewer({
      kc,
      onReview: (seconds, cached) =>
        metrics.tokenReviewDuration.observe({ cached: String(cached) }, seconds),
    }),
    upstream,
    caches,
    seal,
    issuer: config.operatorUrl,
    tokenTtlMs: config.runTokenTtlMs,
  });
  const sessionStore = openSessionStore(config.sessionStore);
  const sessionStatus = new SessionStatus({
    store: sessionStore,
    custom: kc.makeApiClient(CustomObjectsApi),
    logger: logger.child({ component: "sessions" }),
  });
  const verifyRunToken = followingVerifier({
    jwks: () => signingKeys.jwks(),
    refreshKeys: () => signingKeys.ensure(),
    issuerUrl: config.operatorUrl,
  });
  const server = createApiServer({
    tls: serverTls(),
    logger,
    routes: {
      ...admissionRoutes({
        runs: {
          policies: (namespace) => caches.policies.list(namespace),
          connections: (namespace) => caches.connections.list(namespace),
          templateReview,
        },
        operatorUsername,
        logger: logger.child({ component: "webhooks" }),
        metrics,
      }),
      ...credentialRoutes({
        issuer,
        jwks: () => signingKeys.jwks(),
        verify: verifyRunToken,
        runs: caches.runs,
        seal,
        logger: logger.child({ component: "credentials" }),
        metrics,
      }),
      ...ingestRoutes({
        verify: verifyRunToken,
        store: sessionStore,
        status: sessionStatus,
        metrics,
      }),
      ...sessionApiRoutes({
        store: sessionStore,
        runs: caches.runs,
        authenticate: (request) => frontProxy.authenticate(request),
        authorization,
      }),
    },
  });
  const stopWatchingTls = certificates.watch((material) => {
    // The API server must trust the new CA before the server presents a certificate from it.
    applyWebhookConfigurations(kc, config, material)
      .then(() => trustSessionsApiService(kc, config, material))
      .then(() => {
        tls = material;
        server.setSecureContext(secureContextOf(serverTls()));
      })
      .catch((error: unknown) =>
        logger.error({ err: error }, "could not roll the webhook certificate"),
      );
  });
  const stopWatchingKeys = signingKeys.watch();
  const stopWatchingFrontProxy = frontProxy.watch(() =>
    server.setSecureContext(secureContextOf(serverTls())),
  );
  await new Promise<void>((resolve) =>
    server.listen(config.listen.port, config.listen.host, resolve),
  );
  logger.info({ address: server.address() }, "serving webhooks and the credential API");

  let ready = false;
  const health = await startHealthServer(config.metricsListen, metrics.registry, () => ready);

  let elector: LeaderElector | undefined;
  let shuttingDown = false;
  const startReconciling = () => {
    metrics.isLeader.set(1);
    runController.start();
    // Roles and tokens a crash left behind: their runs ended while no replica could revoke.
    void sweepOrphans({
      connections: caches.connections,
      runs: caches.runs,
      upstream,
      tokens,
      logger: logger.child({ component: "sweeper" }),
    });
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
    stopWatchingKeys();
    stopWatchingFrontProxy();
    await runController.stop();
    await elector?.stop();
    server.close();
    health.close();
    await closeAdminSessions();
    sessionStatus.stop();
    await sessionStore.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

/** The user name the API server knows this operator by: the one that may write run status. */
async function whoAmI(kc: KubeConfig): Promise<string> {
  const review = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
    body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  });
  const username = review.status?.userInfo?.username;
  if (!username)
    throw new Error("the API server did not say who the operator is (SelfSubjectReview)");
  return username;
}

function openSessionStore(store: OperatorConfig["sessionStore"]): SessionStore {
  return store.kind === "sqlite"
    ? new SqliteSessionStore(store.file)
    : new PostgresSessionStore(store.url);
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
    process.stderr.write(`operator: ${error.message} (operator --help lists the flags)\n`);
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
