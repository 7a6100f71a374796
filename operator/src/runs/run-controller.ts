// The run lifecycle's controller (controller-runtime's sense): informers over runs, their Jobs
// and NetworkPolicies, and the namespace's policies and Connections feed a work queue whose
// workers hand each key to the RunReconciler.
import { resolve4, resolve6 } from "node:dns/promises";
import { isIP } from "node:net";
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  NetworkingV1Api,
  type V1Job,
  type V1NetworkPolicy,
  type V1NetworkPolicyEgressRule,
  type V1Pod,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
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
} from "../../../api/v1alpha1.ts";
import { isConflict } from "../kube/api-errors.ts";
import { EventRecorder } from "../kube/events.ts";
import { ResilientInformer } from "../kube/informer.ts";
import { fieldManager } from "../kube/meta.ts";
import { objectKey } from "../kube/object-store.ts";
import { WorkQueue } from "../kube/work-queue.ts";
import type { OperatorMetrics } from "../server/metrics.ts";
import { ConnectionProtection } from "./connection-protection.ts";
import { RunReconciler, type RunRevoker } from "./run-reconciler.ts";
import { RunServiceAccounts } from "./run-service-account.ts";
import type { StatusSeal } from "./status-seal.ts";
import type { TemplateReviewDeps } from "./template-review.ts";

/** What the run lifecycle takes from the operator's configuration. */
export interface RunLifecycleConfig {
  /** This replica's name, on the Events it records. */
  identity: string;
  /** The operator's own namespace. */
  namespace: string;
  operatorUrl: string;
  clusterDomain: string;
  workers: number;
  sidecarImage: string;
  sidecarImagePullPolicy: string;
  sidecarUid: number;
  capture: boolean;
}

/** Egress to the operator's API from run pods: its pods when in-cluster, else its address. */
function operatorEgress(config: RunLifecycleConfig): V1NetworkPolicyEgressRule {
  const url = new URL(config.operatorUrl);
  const port = Number(url.port || 443);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const ports = [{ protocol: "TCP", port }];
  if (isIP(host))
    return { to: [{ ipBlock: { cidr: `${host}/${isIP(host) === 6 ? 128 : 32}` } }], ports };
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
    ports,
  };
}

async function resolveHost(host: string): Promise<string[]> {
  const settled = await Promise.allSettled([resolve4(host), resolve6(host)]);
  return settled.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
}

export interface RunControllerOptions {
  kc: KubeConfig;
  config: RunLifecycleConfig;
  logger: Logger;
  metrics: OperatorMetrics;
  revoker: RunRevoker;
  /** The CA bundle sidecars trust the operator with (it can rotate). */
  operatorCaPem: () => string;
  seal: StatusSeal;
  templateReview: TemplateReviewDeps;
}

export class RunController {
  readonly #o: RunControllerOptions;
  readonly #queue: WorkQueue;
  readonly #connectionQueue = new WorkQueue({ name: "connections" });
  readonly #protection: ConnectionProtection;
  readonly #reconciler: RunReconciler;
  readonly #runs: ResilientInformer<LangGraphRun>;
  readonly #informers: ResilientInformer<KubernetesObject>[];
  /** The informers' caches, which the credential API reads on every replica. */
  readonly caches: {
    runs: ResilientInformer<LangGraphRun>;
    jobs: ResilientInformer<V1Job>;
    pods: ResilientInformer<V1Pod>;
    policies: ResilientInformer<AccessPolicy>;
    connections: ResilientInformer<Connection>;
  };
  #phaseGauge: NodeJS.Timeout | undefined;

  constructor(options: RunControllerOptions) {
    this.#o = options;
    const { kc, config, logger, metrics } = options;
    const custom = kc.makeApiClient(CustomObjectsApi);
    const batch = kc.makeApiClient(BatchV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    const networking = kc.makeApiClient(NetworkingV1Api);
    const informer = <T extends KubernetesObject>(
      name: string,
      path: string,
      list: () => Promise<KubernetesListObject<T>>,
      labelSelector?: string,
    ) =>
      new ResilientInformer<T>({
        kc,
        name,
        path,
        list,
        logger,
        ...(labelSelector ? { labelSelector } : {}),
      });
    const customInformer = <T extends KubernetesObject>(plural: string) =>
      informer<T>(
        plural,
        `/apis/${group}/${version}/${plural}`,
        () =>
          custom.listClusterCustomObject({ group, version, plural }) as Promise<
            KubernetesListObject<T>
          >,
      );

    this.#runs = customInformer<LangGraphRun>(resources.runs);
    const policies = customInformer<AccessPolicy>(resources.policies);
    const connections = customInformer<Connection>(resources.connections);
    // Only the Jobs and NetworkPolicies the operator made carry the run label.
    const jobs = informer<V1Job>(
      "jobs",
      "/apis/batch/v1/jobs",
      () => batch.listJobForAllNamespaces({ labelSelector: labels.run }),
      labels.run,
    );
    // Run pods, for the credential API's owner-chain check; the Job template carries the label.
    const pods = informer<V1Pod>(
      "pods",
      "/api/v1/pods",
      () => core.listPodForAllNamespaces({ labelSelector: labels.run }),
      labels.run,
    );
    const networkPolicies = informer<V1NetworkPolicy>(
      "networkpolicies",
      "/apis/networking.k8s.io/v1/networkpolicies",
      () => networking.listNetworkPolicyForAllNamespaces({ labelSelector: labels.run }),
      labels.run,
    );
    this.caches = { runs: this.#runs, jobs, pods, policies, connections };
    this.#informers = [
      this.#runs,
      pods,
      policies,
      connections,
      jobs,
      networkPolicies,
    ] as ResilientInformer<KubernetesObject>[];

    this.#queue = new WorkQueue({
      name: "runs",
      onDepthChange: (depth) => metrics.queueDepth.set(depth),
    });
    this.#reconciler = new RunReconciler({
      kc,
      logger,
      events: new EventRecorder(kc, config.identity, logger),
      revoker: options.revoker,
      runs: this.#runs,
      jobs,
      networkPolicies,
      policies,
      connections,
      sidecar: {
        image: config.sidecarImage,
        imagePullPolicy: config.sidecarImagePullPolicy,
        uid: config.sidecarUid,
        operatorUrl: config.operatorUrl,
        capture: config.capture,
      },
      operatorNamespace: config.namespace,
      seal: options.seal,
      templateReview: options.templateReview,
      serviceAccounts: new RunServiceAccounts(core),
      operatorCaPem: options.operatorCaPem,
      operatorEgress: operatorEgress(config),
      resolver: { resolveHost, clusterDomain: config.clusterDomain },
      fieldManager,
    });

    const enqueueOwner = (obj: KubernetesObject) => {
      const owner = obj.metadata?.ownerReferences?.find(
        (o) => o.controller && o.kind === "LangGraphRun",
      );
      if (owner) this.#queue.add(`${obj.metadata?.namespace}/${owner.name}`);
    };
    // A policy or Connection change can change the decision for waiting runs and the egress of running ones.
    const enqueueNamespace = (obj: KubernetesObject) => {
      for (const run of this.#runs.list(obj.metadata?.namespace)) {
        if (!finishedPhases.has(run.status?.phase ?? RunPhase.Pending))
          this.#queue.add(objectKey(run));
      }
    };
    this.#protection = new ConnectionProtection(kc, connections, this.#runs);
    this.#runs.onChange((run) => {
      this.#queue.add(objectKey(run));
      for (const { connection } of run.spec.access ?? []) {
        this.#connectionQueue.add(`${run.metadata?.namespace}/${connection}`);
      }
    });
    connections.onChange((connection) => this.#connectionQueue.add(objectKey(connection)));
    jobs.onChange(enqueueOwner);
    networkPolicies.onChange(enqueueOwner);
    policies.onChange(enqueueNamespace);
    connections.onChange(enqueueNamespace);
  }

  /** Fills the caches; every replica does, so a new leader starts warm. */
  async sync(): Promise<void> {
    await Promise.all(this.#informers.map((informer) => informer.start()));
    this.#phaseGauge = setInterval(() => this.#countPhases(), 5_000);
    this.#phaseGauge.unref();
  }

  /** Starts draining the queue: only the replica holding the Lease calls this. */
  start(): void {
    const { config, logger, metrics } = this.#o;
    logger.info("reconciling runs");
    this.#queue.start(
      async (key) => {
        const end = metrics.reconcileDuration.startTimer();
        try {
          const result = await this.#reconciler.reconcile(key);
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
    for (const run of this.#runs.list()) this.#queue.add(objectKey(run));
    this.#connectionQueue.start((key) => this.#protection.reconcile(key), {
      concurrency: 1,
      isQuiet: isConflict,
      onError: (key, error, failures) =>
        logger.warn(
          { connection: key, err: error, failures },
          "connection protection failed; retrying",
        ),
    });
    for (const connection of this.caches.connections.list()) {
      this.#connectionQueue.add(objectKey(connection));
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#phaseGauge);
    await Promise.all([this.#queue.shutdown(), this.#connectionQueue.shutdown()]);
    for (const informer of this.#informers) informer.stop();
  }

  #countPhases(): void {
    const counts = new Map<string, number>(Object.values(RunPhase).map((p) => [p, 0]));
    for (const run of this.#runs.list()) {
      const phase = run.status?.phase ?? RunPhase.Pending;
      counts.set(phase, (counts.get(phase) ?? 0) + 1);
    }
    for (const [phase, count] of counts) this.#o.metrics.runsByPhase.set({ phase }, count);
  }
}
