// The operator process: webhooks and health on every replica, the run reconciler on the
// replica holding the Lease.

import { resolve4, resolve6 } from "node:dns/promises";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { isIP } from "node:net";
import { join } from "node:path";
import {
  AdmissionregistrationV1Api,
  ApiException,
  ApiextensionsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1CustomResourceDefinition,
  type V1Job,
  type V1NetworkPolicy,
  type V1NetworkPolicyEgressRule,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { parse } from "yaml";
import {
  type AccessPolicy,
  type Connection,
  finishedPhases,
  group,
  type LangGraphRun,
  labels,
  RunPhase,
  resources,
  version,
} from "../../api/v1alpha1.ts";
import { WebhookCertificates, type WebhookTlsMaterial } from "./admission/webhook-certs.ts";
import {
  mutatingConfiguration,
  validatingConfiguration,
  type WebhookTarget,
} from "./admission/webhook-configurations.ts";
import { createWebhookServer } from "./admission/webhook-server.ts";
import { ConfigError, type OperatorConfig, parseConfig, usage } from "./config.ts";
import { nothingIssuedYet } from "./credentials/revoker.ts";
import { EventRecorder } from "./events.ts";
import { ResilientInformer } from "./kube/informer.ts";
import { loadKubeConfig } from "./kube/kube-config.ts";
import { LeaderElector } from "./kube/leader-election.ts";
import { WorkQueue } from "./kube/work-queue.ts";
import { createLogger } from "./log.ts";
import { createMetrics } from "./metrics.ts";
import { isConflict, RunController } from "./runs/run-controller.ts";

const fieldManager = "langgraph-jit-operator";
const applyPatch = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);
const crdDirectory = join(import.meta.dirname, "..", "..", "crds");

/** Host names and addresses the webhook certificate must cover. */
function servingNames(config: OperatorConfig): { dnsNames: string[]; ipAddresses: string[] } {
  const service = config.serviceName;
  const ns = config.namespace;
  const dnsNames = [
    service,
    `${service}.${ns}`,
    `${service}.${ns}.svc`,
    `${service}.${ns}.svc.${config.clusterDomain}`,
  ];
  const ipAddresses: string[] = [];
  for (const url of [config.webhookUrl, config.operatorUrl]) {
    const host = url ? new URL(url).hostname.replace(/^\[|\]$/g, "") : undefined;
    if (!host) continue;
    if (isIP(host)) ipAddresses.push(host);
    else dnsNames.push(host);
  }
  return { dnsNames: [...new Set(dnsNames)], ipAddresses: [...new Set(ipAddresses)] };
}

async function ensureNamespace(core: CoreV1Api, name: string): Promise<void> {
  try {
    await core.createNamespace({ body: { metadata: { name } } });
  } catch (error) {
    if (!(error instanceof ApiException && error.code === 409)) throw error;
  }
}

async function applyWebhookConfigurations(
  kc: KubeConfig,
  config: OperatorConfig,
  tls: WebhookTlsMaterial,
) {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const target: WebhookTarget = {
    name: config.webhookConfigurationName,
    namespace: config.namespace,
    caBundlePem: tls.caBundlePem,
    ...(config.webhookUrl
      ? { url: config.webhookUrl }
      : { service: { name: config.serviceName, port: config.listen.port } }),
  };
  const options = { name: target.name, fieldManager, force: true };
  await api.patchMutatingWebhookConfiguration(
    { ...options, body: mutatingConfiguration(target) },
    applyPatch,
  );
  await api.patchValidatingWebhookConfiguration(
    { ...options, body: validatingConfiguration(target) },
    applyPatch,
  );
}

async function applyCrds(kc: KubeConfig, logger: Logger): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  for (const file of readdirSync(crdDirectory)
    .filter((f) => f.endsWith(".yaml"))
    .sort()) {
    const crd = parse(readFileSync(join(crdDirectory, file), "utf8")) as V1CustomResourceDefinition;
    const name = crd.metadata?.name ?? "";
    await api.patchCustomResourceDefinition(
      { name, body: crd, fieldManager, force: true },
      applyPatch,
    );
    logger.info({ crd: name }, "applied CRD");
  }
}

/** Egress to the operator's API from run pods: its pods when in-cluster, else its address. */
function operatorEgress(config: OperatorConfig): V1NetworkPolicyEgressRule {
  const url = new URL(config.operatorUrl);
  const port = Number(url.port || 443);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (isIP(host)) {
    return {
      to: [{ ipBlock: { cidr: `${host}/${isIP(host) === 6 ? 128 : 32}` } }],
      ports: [{ protocol: "TCP", port }],
    };
  }
  return {
    to: [
      {
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": config.namespace } },
        podSelector: {
          matchLabels: {
            "app.kubernetes.io/name": "langgraph-jit",
            "app.kubernetes.io/component": "operator",
          },
        },
      },
    ],
    ports: [{ protocol: "TCP", port }],
  };
}

async function resolveHost(host: string): Promise<string[]> {
  const settled = await Promise.allSettled([resolve4(host), resolve6(host)]);
  return settled.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
}

function informer<T extends KubernetesObject>(
  kc: KubeConfig,
  logger: Logger,
  name: string,
  path: string,
  list: () => Promise<KubernetesListObject<T>>,
  labelSelector?: string,
): ResilientInformer<T> {
  return new ResilientInformer<T>({
    kc,
    name,
    path,
    list,
    logger: logger.child({ informer: name }),
    ...(labelSelector ? { labelSelector } : {}),
  });
}

async function run(config: OperatorConfig, logger: Logger): Promise<void> {
  const kc = loadKubeConfig(config.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const batch = kc.makeApiClient(BatchV1Api);
  const networking = kc.makeApiClient(NetworkingV1Api);
  const metrics = createMetrics();

  const certificates = new WebhookCertificates({
    core,
    namespace: config.namespace,
    secretName: config.webhookSecretName,
    ...servingNames(config),
    logger: logger.child({ component: "webhook-certs" }),
  });
  const tls = await certificates.ensure();
  await applyWebhookConfigurations(kc, config, tls);
  const webhooks = createWebhookServer({
    tls,
    sidecarUid: config.sidecarUid,
    logger: logger.child({ component: "webhooks" }),
    metrics,
  });
  const stopWatchingTls = certificates.watch((material) => {
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

  const customList =
    <T>(plural: string) =>
    () =>
      custom.listClusterCustomObject({ group, version, plural }) as Promise<
        KubernetesListObject<T & KubernetesObject>
      >;
  const runs = informer<LangGraphRun>(
    kc,
    logger,
    "runs",
    `/apis/${group}/${version}/${resources.runs}`,
    customList<LangGraphRun>(resources.runs),
  );
  const policies = informer<AccessPolicy>(
    kc,
    logger,
    "policies",
    `/apis/${group}/${version}/${resources.policies}`,
    customList<AccessPolicy>(resources.policies),
  );
  const connections = informer<Connection>(
    kc,
    logger,
    "connections",
    `/apis/${group}/${version}/${resources.connections}`,
    customList<Connection>(resources.connections),
  );
  const jobs = informer<V1Job>(
    kc,
    logger,
    "jobs",
    "/apis/batch/v1/jobs",
    () => batch.listJobForAllNamespaces({ labelSelector: labels.run }),
    labels.run,
  );
  const networkPolicies = informer<V1NetworkPolicy>(
    kc,
    logger,
    "networkpolicies",
    "/apis/networking.k8s.io/v1/networkpolicies",
    () => networking.listNetworkPolicyForAllNamespaces({ labelSelector: labels.run }),
    labels.run,
  );

  const queue = new WorkQueue({
    name: "runs",
    onDepthChange: (depth) => metrics.queueDepth.set(depth),
  });
  const controller = new RunController({
    kc,
    logger,
    events: new EventRecorder(kc, config.identity, logger),
    revoker: nothingIssuedYet,
    runs,
    jobs,
    networkPolicies,
    policies,
    connections,
    sidecar: {
      image: config.sidecarImage,
      imagePullPolicy: config.sidecarImagePullPolicy,
      uid: config.sidecarUid,
      operatorUrl: config.operatorUrl,
    },
    operatorEgress: operatorEgress(config),
    resolver: { resolveHost, clusterDomain: config.clusterDomain },
    fieldManager,
  });

  const enqueueOwner = (obj: KubernetesObject) => {
    const owner = obj.metadata?.ownerReferences?.find(
      (o) => o.controller && o.kind === "LangGraphRun",
    );
    if (owner) queue.add(`${obj.metadata?.namespace}/${owner.name}`);
  };
  // Policy or Connection changes can change the decision for waiting runs, and the egress of running ones.
  const enqueueNamespace = (obj: KubernetesObject) => {
    for (const r of runs.list(obj.metadata?.namespace)) {
      if (!finishedPhases.has(r.status?.phase ?? RunPhase.Pending))
        queue.add(`${r.metadata?.namespace}/${r.metadata?.name}`);
    }
  };
  runs.onChange((r) => queue.add(`${r.metadata?.namespace}/${r.metadata?.name}`));
  jobs.onChange(enqueueOwner);
  networkPolicies.onChange(enqueueOwner);
  policies.onChange(enqueueNamespace);
  connections.onChange(enqueueNamespace);
  await Promise.all([runs, policies, connections, jobs, networkPolicies].map((i) => i.start()));
  const phaseGauge = setInterval(() => {
    const counts = new Map<string, number>(Object.values(RunPhase).map((p) => [p, 0]));
    for (const r of runs.list()) {
      const phase = r.status?.phase ?? RunPhase.Pending;
      counts.set(phase, (counts.get(phase) ?? 0) + 1);
    }
    for (const [phase, count] of counts) metrics.runsByPhase.set({ phase }, count);
  }, 5_000);
  phaseGauge.unref();

  const startReconciling = () => {
    logger.info("reconciling runs");
    metrics.isLeader.set(1);
    queue.start(
      async (key) => {
        const end = metrics.reconcileDuration.startTimer();
        try {
          const result = await controller.reconcile(key);
          end({ result: "ok" });
          return result;
        } catch (error) {
          end({ result: "error" });
          throw error;
        }
      },
      {
        concurrency: config.workers,
        isQuiet: isConflict,
        onError: (key, error, failures) =>
          logger.warn({ run: key, err: error, failures }, "reconcile failed; retrying"),
      },
    );
    for (const r of runs.list()) queue.add(`${r.metadata?.namespace}/${r.metadata?.name}`);
  };

  let ready = false;
  const health = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://operator").pathname;
    if (path === "/metrics") {
      metrics.registry.metrics().then((body) => {
        response.writeHead(200, { "content-type": metrics.registry.contentType });
        response.end(body);
      });
      return;
    }
    const ok = path === "/healthz" || (path === "/readyz" && ready);
    response.writeHead(ok ? 200 : path === "/readyz" ? 503 : 404, { "content-type": "text/plain" });
    response.end(ok ? "ok" : "not ready");
  });
  await new Promise<void>((resolve) =>
    health.listen(config.metricsListen.port, config.metricsListen.host, resolve),
  );

  let elector: LeaderElector | undefined;
  let shuttingDown = false;
  if (config.leaderElection) {
    await ensureNamespace(core, config.namespace).catch(() => undefined);
    elector = new LeaderElector({
      kc,
      namespace: config.namespace,
      name: config.leaseName,
      identity: config.identity,
      logger: logger.child({ component: "leader-election" }),
      onStartedLeading: startReconciling,
      // Losing the Lease mid-reconcile could let two replicas act: stop, and let the Deployment restart us.
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
    await queue.shutdown();
    await elector?.stop();
    for (const i of [runs, policies, connections, jobs, networkPolicies]) i.stop();
    webhooks.close();
    health.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

async function install(config: OperatorConfig, logger: Logger): Promise<void> {
  const kc = loadKubeConfig(config.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  await applyCrds(kc, logger);
  await ensureNamespace(core, config.namespace);
  const tls = await new WebhookCertificates({
    core,
    namespace: config.namespace,
    secretName: config.webhookSecretName,
    ...servingNames(config),
    logger,
  }).ensure();
  await applyWebhookConfigurations(kc, config, tls);
  logger.info(
    { webhooks: config.webhookConfigurationName },
    "installed CRDs and webhook configurations",
  );
}

async function main(): Promise<void> {
  let config: OperatorConfig;
  try {
    if (process.argv.includes("--help") || process.argv.includes("-h")) {
      process.stdout.write(usage);
      return;
    }
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
