// The one informer cache of the operator process (client-go's shared informer factory): each
// kind is listed and watched once, and every controller, webhook and API reads the same copy.
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  NetworkingV1Api,
  RbacAuthorizationV1Api,
  type V1Job,
  type V1Namespace,
  type V1NetworkPolicy,
  type V1Pod,
  type V1RoleBinding,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import {
  type AccessPolicy,
  type Approval,
  type ClusterConnection,
  type Connection,
  group,
  type HeldCommand,
  type LangGraphRun,
  labels,
  resources,
  version,
} from "../../../api/v1alpha1.ts";
import type { WatchedCache } from "./cache.ts";
import { ResilientInformer } from "./informer.ts";

/** The kinds the operator reads, as caches: what controllers and tests depend on. */
export interface ClusterObjects {
  runs: WatchedCache<LangGraphRun>;
  policies: WatchedCache<AccessPolicy>;
  connections: WatchedCache<Connection>;
  /** The platform's connections, offered to namespaces by their selector (ADR 0011). */
  clusterConnections: WatchedCache<ClusterConnection>;
  /** Namespaces, for their labels: what a ClusterConnection's namespaceSelector reads. */
  namespaces: WatchedCache<V1Namespace>;
  /** Who may read a namespaced Connection's Secret: what CredentialsExposed reviews. */
  roleBindings: WatchedCache<V1RoleBinding>;
  approvals: WatchedCache<Approval>;
  heldCommands: WatchedCache<HeldCommand>;
  /** Only the Jobs, pods and NetworkPolicies of runs: they carry the run label. */
  jobs: WatchedCache<V1Job>;
  pods: WatchedCache<V1Pod>;
  networkPolicies: WatchedCache<V1NetworkPolicy>;
  /** Pods that asked for injection (label langgraph-jit.dev/inject=true): tagged workloads'. */
  taggedPods: WatchedCache<V1Pod>;
}

export class ClusterCache implements ClusterObjects {
  readonly runs: ResilientInformer<LangGraphRun>;
  readonly policies: ResilientInformer<AccessPolicy>;
  readonly connections: ResilientInformer<Connection>;
  readonly clusterConnections: ResilientInformer<ClusterConnection>;
  readonly namespaces: ResilientInformer<V1Namespace>;
  readonly roleBindings: ResilientInformer<V1RoleBinding>;
  readonly approvals: ResilientInformer<Approval>;
  readonly heldCommands: ResilientInformer<HeldCommand>;
  readonly jobs: ResilientInformer<V1Job>;
  readonly pods: ResilientInformer<V1Pod>;
  readonly networkPolicies: ResilientInformer<V1NetworkPolicy>;
  readonly taggedPods: ResilientInformer<V1Pod>;
  readonly #withRoleBindings: boolean;

  /** `roleBindings`: whether RoleBindings are read (CredentialsExposed, namespaced Connections only). */
  constructor(kc: KubeConfig, logger: Logger, options: { roleBindings: boolean }) {
    const custom = kc.makeApiClient(CustomObjectsApi);
    const batch = kc.makeApiClient(BatchV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    const networking = kc.makeApiClient(NetworkingV1Api);
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    this.#withRoleBindings = options.roleBindings;
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
    const ours = <T extends KubernetesObject>(plural: string) =>
      informer<T>(
        plural,
        `/apis/${group}/${version}/${plural}`,
        () =>
          custom.listClusterCustomObject({ group, version, plural }) as Promise<
            KubernetesListObject<T>
          >,
      );
    this.runs = ours<LangGraphRun>(resources.runs);
    this.policies = ours<AccessPolicy>(resources.policies);
    this.connections = ours<Connection>(resources.connections);
    this.clusterConnections = ours<ClusterConnection>(resources.clusterConnections);
    this.namespaces = informer<V1Namespace>("namespaces", "/api/v1/namespaces", () =>
      core.listNamespace(),
    );
    this.roleBindings = informer<V1RoleBinding>(
      "rolebindings",
      "/apis/rbac.authorization.k8s.io/v1/rolebindings",
      () => rbac.listRoleBindingForAllNamespaces(),
    );
    this.approvals = ours<Approval>(resources.approvals);
    this.heldCommands = ours<HeldCommand>(resources.heldCommands);
    this.jobs = informer<V1Job>(
      "jobs",
      "/apis/batch/v1/jobs",
      () => batch.listJobForAllNamespaces({ labelSelector: labels.run }),
      labels.run,
    );
    this.pods = informer<V1Pod>(
      "pods",
      "/api/v1/pods",
      () => core.listPodForAllNamespaces({ labelSelector: labels.run }),
      labels.run,
    );
    this.networkPolicies = informer<V1NetworkPolicy>(
      "networkpolicies",
      "/apis/networking.k8s.io/v1/networkpolicies",
      () => networking.listNetworkPolicyForAllNamespaces({ labelSelector: labels.run }),
      labels.run,
    );
    const tagged = `${labels.inject}=true`;
    this.taggedPods = informer<V1Pod>(
      "tagged-pods",
      "/api/v1/pods",
      () => core.listPodForAllNamespaces({ labelSelector: tagged }),
      tagged,
    );
  }

  get #informers(): ResilientInformer<KubernetesObject>[] {
    return [
      this.runs,
      this.policies,
      this.connections,
      this.clusterConnections,
      this.namespaces,
      ...(this.#withRoleBindings ? [this.roleBindings] : []),
      this.approvals,
      this.heldCommands,
      this.jobs,
      this.pods,
      this.networkPolicies,
      this.taggedPods,
    ] as ResilientInformer<KubernetesObject>[];
  }

  /** Lists every kind; resolves once all are in the cache. Every replica syncs, so a new leader starts warm. */
  async sync(): Promise<void> {
    await Promise.all(this.#informers.map((informer) => informer.start()));
  }

  stop(): void {
    for (const informer of this.#informers) informer.stop();
  }
}
