// The operator process, built from its parts: one cluster cache; webhooks, the credential API,
// session ingest and the sessions API on every replica; and, on the replica holding the Lease,
// the controllers (run lifecycle, Connection protection) and the credential sweeper. main.ts
// starts it for the binary; an e2e test can start it in-process against the test cluster.
import {
  AuthenticationV1Api,
  AuthorizationV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  NetworkingV1Api,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { RunPhase } from "../../api/v1alpha1.ts";
import type { PodAdmissionDeps } from "./admission/pod-admission.ts";
import { admissionRoutes } from "./admission/webhook-server.ts";
import { heldCommandRoutes } from "./approvals/held-command-api.ts";
import { heldCommandController } from "./approvals/held-command-controller.ts";
import { KubeHeldCommands } from "./approvals/held-commands.ts";
import type { OperatorConfig } from "./config.ts";
import { credentialRoutes } from "./credentials/credential-api.ts";
import { CredentialIssuer } from "./credentials/credential-issuer.ts";
import { CredentialSweeper } from "./credentials/credential-sweeper.ts";
import { MintedTokens } from "./credentials/minted-tokens.ts";
import { closeAdminSessions } from "./credentials/postgres-roles.ts";
import { CredentialRevoker } from "./credentials/revoker.ts";
import { followingVerifier } from "./credentials/run-token.ts";
import { SigningKeys } from "./credentials/signing-keys.ts";
import { PodTokenReviewer } from "./credentials/token-review.ts";
import { UpstreamCredentials } from "./credentials/upstream-credentials.ts";
import { KubePodRunWriter, podRunController } from "./injection/pod-runs.ts";
import {
  applyWebhookConfigurations,
  trustSessionsApiService,
  webhookCertificates,
} from "./install.ts";
import { userMay } from "./kube/access-review.ts";
import { unlessNotFound } from "./kube/api-errors.ts";
import { ClusterCache } from "./kube/cluster-cache.ts";
import type { LeaderTask } from "./kube/controller.ts";
import { EventRecorder } from "./kube/events.ts";
import { CustomObjectFinalizers } from "./kube/finalizers.ts";
import { LeaderElector } from "./kube/leader-election.ts";
import { fieldManager } from "./kube/meta.ts";
import { WebhookNotifier } from "./notifications/approval-notices.ts";
import { connectionsIn } from "./policy/namespace-connections.ts";
import { connectionProtectionController } from "./runs/connection-protection.ts";
import {
  credentialsExposedController,
  KubeConnectionConditions,
} from "./runs/credentials-exposed.ts";
import { clusterResolver, operatorEgress, runController } from "./runs/run-controller.ts";
import { RunServiceAccounts } from "./runs/run-service-account.ts";
import { KubeRunStatusWriter } from "./runs/run-status-writer.ts";
import { KubeRunWorkloads } from "./runs/run-workloads.ts";
import { loadStatusSeal } from "./runs/status-seal.ts";
import { requesterAuthorizer } from "./runs/template-review.ts";
import { FrontProxyAuth } from "./server/front-proxy-auth.ts";
import { startHealthServer } from "./server/health.ts";
import { createApiServer, secureContextOf } from "./server/https-server.ts";
import { createMetrics, type OperatorMetrics } from "./server/metrics.ts";
import { ingestRoutes } from "./sessions/ingest-api.ts";
import { PostgresSessionStore } from "./sessions/postgres-store.ts";
import { StoredRunSessionLog } from "./sessions/run-approval-log.ts";
import { sessionApiRoutes } from "./sessions/session-api.ts";
import { SessionStatus } from "./sessions/session-status.ts";
import type { SessionStore } from "./sessions/session-store.ts";
import { SqliteSessionStore } from "./sessions/sqlite-store.ts";

export interface RunningOperator {
  /** Where the webhooks and APIs listen, and where /metrics and the probes do. */
  apiAddress: { address: string; port: number };
  healthAddress: { address: string; port: number };
  cache: ClusterCache;
  /** Stops every part and releases the Lease; resolves once all are stopped. */
  stop(): Promise<void>;
}

/**
 * Starts the operator. `onLostLease` is called when this replica stops leading without being
 * stopped: reconciling on could let two replicas act, so the binary exits.
 */
export async function startOperator(
  config: OperatorConfig,
  kc: KubeConfig,
  logger: Logger,
  onLostLease: () => void,
): Promise<RunningOperator> {
  const core = kc.makeApiClient(CoreV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
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
  const events = new EventRecorder(kc, config.identity, logger);
  const status = new KubeRunStatusWriter(custom);
  const finalizers = new CustomObjectFinalizers(custom);
  const heldCommands = new KubeHeldCommands(custom);

  const cache = new ClusterCache(kc, logger, { roleBindings: config.namespacedConnections });
  await cache.sync();

  const notifier = new WebhookNotifier({
    policy: (namespace, name) => cache.policies.get(namespace, name),
    readSecret: async (namespace, name) => {
      const secret = await unlessNotFound(core.readNamespacedSecret({ namespace, name }));
      if (!secret) return undefined;
      const data = Object.entries(secret.data ?? {});
      return Object.fromEntries(data.map(([k, v]) => [k, Buffer.from(v, "base64").toString()]));
    },
    events,
    logger: logger.child({ component: "notifications" }),
  });

  const sessionStore = openSessionStore(config.sessionStore);
  const sessionStatus = new SessionStatus({
    store: sessionStore,
    status,
    logger: logger.child({ component: "sessions" }),
  });

  const sidecar = {
    image: config.sidecarImage,
    imagePullPolicy: config.sidecarImagePullPolicy,
    uid: config.sidecarUid,
    operatorUrl: config.operatorUrl,
    capture: config.capture,
  };
  const credentialsLogger = logger.child({ component: "credentials" });
  const tokens = new MintedTokens(core, config.namespace);
  const upstream = new UpstreamCredentials(
    core,
    tokens,
    {
      credentialsNamespace: config.credentialsNamespace,
      namespacedConnections: config.namespacedConnections,
    },
    credentialsLogger,
  );
  const leaderTasks: LeaderTask[] = [
    runController({
      deps: {
        logger,
        cache,
        status,
        finalizers,
        workloads: new KubeRunWorkloads(
          batch,
          kc.makeApiClient(NetworkingV1Api),
          core,
          fieldManager,
        ),
        events,
        notifier,
        sessions: new StoredRunSessionLog(sessionStore, sessionStatus, logger),
        revoker: new CredentialRevoker(upstream),
        serviceAccounts: new RunServiceAccounts(core),
        seal,
        templateReview,
        sidecar,
        operatorCaPem: () => tls.caBundlePem,
        operatorEgress: operatorEgress(config.operatorUrl, config.namespace),
        operatorNamespace: config.namespace,
        resolver: clusterResolver(core, kc.makeApiClient(DiscoveryV1Api), config.clusterDomain),
      },
      workers: config.workers,
      metrics,
    }),
    connectionProtectionController({ ...cache, finalizers }, logger),
    ...(config.namespacedConnections
      ? [
          credentialsExposedController(
            {
              connections: cache.connections,
              roleBindings: cache.roleBindings,
              userMayGetSecret: (user, namespace, name) =>
                userMay(authorization, user, { namespace, verb: "get", resource: "secrets", name }),
              conditions: new KubeConnectionConditions(custom),
              events,
              operatorUsername,
            },
            logger,
          ),
        ]
      : []),
    heldCommandController({ cache, store: heldCommands, events, notifier, seal }, logger),
    ...(config.injectPods
      ? [
          podRunController({
            cache,
            writer: new KubePodRunWriter(custom, core),
            logger: logger.child({ component: "tagged-pods" }),
          }),
        ]
      : []),
    // Roles and tokens a crash left behind: their runs ended while no replica could revoke.
    new CredentialSweeper({
      connections: cache.connections,
      clusterConnections: cache.clusterConnections,
      runs: cache.runs,
      upstream,
      tokens,
      logger: logger.child({ component: "sweeper" }),
    }),
  ];
  const phaseGauge = setInterval(() => countPhases(cache, metrics), 5_000);
  phaseGauge.unref();

  const issuer = new CredentialIssuer({
    readPod: (namespace, name) => unlessNotFound(core.readNamespacedPod({ namespace, name })),
    readJob: (namespace, name) => unlessNotFound(batch.readNamespacedJob({ namespace, name })),
    ...(config.injectPods
      ? {
          tagged: {
            connections: (namespace: string) => connectionsIn(cache, namespace).connections,
            sidecar: () => ({ ...sidecar, operatorCaPem: tls.caBundlePem }),
            rules: templateReview.rules,
            accountMay: (account, namespace, attributes) =>
              userMay(authorization, account, { namespace, ...attributes }),
          },
        }
      : {}),
    status,
    logger: credentialsLogger,
    events,
    signingKeys,
    reviewer: new PodTokenReviewer({
      api: kc.makeApiClient(AuthenticationV1Api),
      onReview: (seconds, cached) =>
        metrics.tokenReviewDuration.observe({ cached: String(cached) }, seconds),
    }),
    upstream,
    caches: cache,
    seal,
    issuer: config.operatorUrl,
    tokenTtlMs: config.runTokenTtlMs,
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
          policies: (namespace) => cache.policies.list(namespace),
          connections: (namespace) => cache.connections.list(namespace),
          templateReview,
          taggedPod: (namespace, name) => cache.taggedPods.get(namespace, name),
          operatorUsername,
        },
        policies: {
          connections: (namespace) => connectionsIn(cache, namespace),
          clusterConnection: (name) => cache.clusterConnections.get("", name),
        },
        podConnect: {
          pod: (namespace, name) => unlessNotFound(core.readNamespacedPod({ namespace, name })),
        },
        approvals: {
          run: (namespace, name) => cache.runs.get(namespace, name),
          heldCommand: (namespace, name) => cache.heldCommands.get(namespace, name),
          seal,
          approvals: (namespace) => cache.approvals.list(namespace),
          policies: (namespace) => cache.policies.list(namespace),
          connections: (namespace) => connectionsIn(cache, namespace),
        },
        ...(config.injectPods
          ? {
              pods: {
                policies: (namespace: string) => cache.policies.list(namespace),
                connections: (namespace: string) => connectionsIn(cache, namespace),
                rules: templateReview.rules,
                sidecar: () => ({ ...sidecar, operatorCaPem: tls.caBundlePem }),
                accountMay: (account, namespace, attributes) =>
                  userMay(authorization, account, { namespace, ...attributes }),
              } satisfies PodAdmissionDeps,
            }
          : {}),
        operatorUsername,
        logger: logger.child({ component: "webhooks" }),
        metrics,
      }),
      ...credentialRoutes({
        issuer,
        jwks: () => signingKeys.jwks(),
        verify: verifyRunToken,
        runs: cache.runs,
        seal,
        logger: credentialsLogger,
        metrics,
      }),
      ...heldCommandRoutes({ verify: verifyRunToken, cache, store: heldCommands, seal }),
      ...ingestRoutes({
        verify: verifyRunToken,
        store: sessionStore,
        status: sessionStatus,
        metrics,
      }),
      ...sessionApiRoutes({
        store: sessionStore,
        runs: cache.runs,
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

  let stopping = false;
  let leading = false;
  const startLeading = () => {
    leading = true;
    metrics.isLeader.set(1);
    for (const task of leaderTasks) task.start();
  };
  const elector = config.leaderElection
    ? new LeaderElector({
        kc,
        namespace: config.namespace,
        name: config.leaseName,
        identity: config.identity,
        logger: logger.child({ component: "leader-election" }),
        onStartedLeading: startLeading,
        onStoppedLeading: () => {
          metrics.isLeader.set(0);
          if (stopping) return;
          logger.error("lost the leader Lease");
          onLostLease();
        },
      })
    : undefined;
  if (elector) elector.start();
  else startLeading();
  ready = true;
  logger.info({ metrics: health.address() }, "operator ready");

  return {
    apiAddress: server.address() as RunningOperator["apiAddress"],
    healthAddress: health.address() as RunningOperator["healthAddress"],
    cache,
    async stop() {
      if (stopping) return;
      stopping = true;
      ready = false;
      stopWatchingTls();
      stopWatchingKeys();
      stopWatchingFrontProxy();
      clearInterval(phaseGauge);
      if (leading) await Promise.all(leaderTasks.map((task) => task.stop()));
      await elector?.stop();
      cache.stop();
      await Promise.all([
        new Promise((resolve) => server.close(resolve)),
        new Promise((resolve) => health.close(resolve)),
      ]);
      await closeAdminSessions();
      sessionStatus.stop();
      await sessionStore.close();
    },
  };
}

function countPhases(cache: ClusterCache, metrics: OperatorMetrics): void {
  const counts = new Map<string, number>(Object.values(RunPhase).map((p) => [p, 0]));
  for (const run of cache.runs.list()) {
    const phase = run.status?.phase ?? RunPhase.Pending;
    counts.set(phase, (counts.get(phase) ?? 0) + 1);
  }
  for (const [phase, count] of counts) metrics.runsByPhase.set({ phase }, count);
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
