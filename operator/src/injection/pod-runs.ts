// Records each tagged pod as a LangGraphRun: named after the pod, owned by it (so deleted with
// it), with spec.source instead of a template, stamped with the pod's ServiceAccount. Only in a
// namespace labelled for injection, and once per pod: the run labels its pod, so a run deleted
// to cut a pod off stays deleted.
import type { CoreV1Api, CustomObjectsApi, V1OwnerReference, V1Pod } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { formatDuration, parseDuration } from "../../../api/duration.ts";
import {
  annotations,
  apiVersion,
  group,
  type LangGraphRun,
  labels,
  resources,
  version,
} from "../../../api/v1alpha1.ts";
import { isConflict } from "../kube/api-errors.ts";
import type { ClusterObjects } from "../kube/cluster-cache.ts";
import { Controller, type ReconcileResult, type Reconciler } from "../kube/controller.ts";
import { objectKey } from "../kube/object-store.ts";
import { evaluateAccess } from "../policy/evaluate-access.ts";
import { connectionsIn } from "../policy/namespace-connections.ts";
import { sidecarContainerName } from "../runs/pod-contract.ts";
import { maxDurationOf, taggedPodRequester } from "../runs/tagged-pod.ts";
import { parseAccessAnnotation } from "./access-annotation.ts";

/** What the controller reads and writes beyond the cache. */
export interface PodRunWriter {
  /** Creates the run; one that exists already fails with 409. */
  createRun(namespace: string, run: LangGraphRun): Promise<LangGraphRun>;
  /** Whether the namespace is labelled langgraph-jit.dev/inject=enabled. */
  injectionEnabled(namespace: string): Promise<boolean>;
}

export class KubePodRunWriter implements PodRunWriter {
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;

  constructor(custom: CustomObjectsApi, core: CoreV1Api) {
    this.#custom = custom;
    this.#core = core;
  }

  async createRun(namespace: string, run: LangGraphRun): Promise<LangGraphRun> {
    return (await this.#custom.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: resources.runs,
      body: run,
    })) as LangGraphRun;
  }

  async injectionEnabled(namespace: string): Promise<boolean> {
    const found = await this.#core.readNamespace({ name: namespace });
    return found.metadata?.labels?.[labels.inject] === "enabled";
  }
}

export interface PodRunDeps {
  cache: Pick<
    ClusterObjects,
    "taggedPods" | "runs" | "policies" | "connections" | "clusterConnections" | "namespaces"
  >;
  writer: PodRunWriter;
  logger: Logger;
}

const finished = new Set(["Succeeded", "Failed"]);

export class PodRunReconciler implements Reconciler {
  readonly #deps: PodRunDeps;

  constructor(deps: PodRunDeps) {
    this.#deps = deps;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { cache, writer } = this.#deps;
    const [namespace = "", name = ""] = key.split("/");
    const pod = cache.taggedPods.get(namespace, name);
    const uid = pod?.metadata?.uid ?? "";
    if (!pod || pod.metadata?.deletionTimestamp || finished.has(pod.status?.phase ?? "")) return;
    // Only a pod the webhook injected (issuance checks it again, field by field).
    if (!pod.spec?.initContainers?.some((c) => c.name === sidecarContainerName)) return;
    const existing = cache.runs.get(namespace, name);
    if (existing?.spec.source?.uid === uid) return;
    // Its run labelled it: that run was deleted to cut the pod off.
    if (pod.metadata?.labels?.[labels.run] !== undefined) return;
    // A run of an earlier pod of that name goes with that pod, by garbage collection.
    if (existing) return { requeueAfterMs: 2_000 };
    // The label is the platform team's consent: the webhook asked it, and so do we.
    if (!(await writer.injectionEnabled(namespace))) return;
    let run: LangGraphRun;
    try {
      run = this.#runOf(pod);
    } catch (error) {
      // The annotation was changed since admission: nothing to record.
      this.#deps.logger.warn({ namespace, pod: name, err: error }, "tagged pod not recorded");
      return;
    }
    try {
      await writer.createRun(namespace, run);
    } catch (error) {
      if (isConflict(error)) return { requeueAfterMs: 1_000 };
      throw error;
    }
    this.#deps.logger.info({ namespace, pod: name }, "recorded a tagged pod as a run");
    return undefined;
  }

  #runOf(pod: V1Pod): LangGraphRun {
    const namespace = pod.metadata?.namespace ?? "";
    const name = pod.metadata?.name ?? "";
    const requester = taggedPodRequester(pod);
    const access = parseAccessAnnotation(pod.metadata?.annotations?.[annotations.access]);
    const owner = pod.metadata?.ownerReferences?.find((o) => o.controller);
    const pinned = maxDurationOf(pod);
    return {
      apiVersion,
      kind: "LangGraphRun",
      metadata: {
        name,
        namespace,
        annotations: { [annotations.requester]: JSON.stringify(requester) },
        ownerReferences: [podOwner(pod)],
      },
      spec: {
        source: {
          pod: name,
          uid: pod.metadata?.uid ?? "",
          ...(owner ? { owner: `${owner.kind}/${owner.name}` } : {}),
        },
        access,
        maxDuration: formatDuration(pinned ?? this.#policyMaxDuration(pod, access) ?? 30 * 60_000),
        reason: owner ? `tagged pod of ${owner.kind} ${owner.name}` : "tagged pod",
      },
    };
  }

  /** The longest every granting policy allows, when the pod does not pin it. */
  #policyMaxDuration(pod: V1Pod, access: LangGraphRun["spec"]["access"]): number | undefined {
    const { cache } = this.#deps;
    const namespace = pod.metadata?.namespace ?? "";
    const decision = evaluateAccess({
      namespace,
      requester: taggedPodRequester(pod),
      access,
      maxDurationMs: 0,
      policies: cache.policies.list(namespace),
      ...connectionsIn(cache, namespace),
    });
    if (!decision.allowed) return undefined;
    const granting = new Set(decision.grants.map((g) => g.policy));
    const durations = cache.policies
      .list(namespace)
      .filter((p) => granting.has(p.metadata?.name ?? ""))
      .map((p) => parseDuration(p.spec.maxDuration));
    return durations.length > 0 ? Math.min(...durations) : undefined;
  }
}

function podOwner(pod: V1Pod): V1OwnerReference {
  return {
    apiVersion: "v1",
    kind: "Pod",
    name: pod.metadata?.name ?? "",
    uid: pod.metadata?.uid ?? "",
    controller: true,
  };
}

/** Records tagged pods as they appear. */
export function podRunController(deps: PodRunDeps): Controller {
  const controller = new Controller({
    name: "tagged-pods",
    reconciler: new PodRunReconciler(deps),
    workers: 2,
    logger: deps.logger,
    allKeys: () => deps.cache.taggedPods.list().map(objectKey),
  });
  deps.cache.taggedPods.onChange((pod) => {
    if (pod.metadata?.labels?.[labels.inject] === "true") controller.enqueue(objectKey(pod));
  });
  return controller;
}
