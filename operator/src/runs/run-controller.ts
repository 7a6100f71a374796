// The run lifecycle's controller: changes to runs, their Jobs and NetworkPolicies, and the
// namespace's policies and Connections enqueue runs for the RunReconciler.
import { resolve4, resolve6 } from "node:dns/promises";
import { isIP } from "node:net";
import type { CoreV1Api, DiscoveryV1Api, KubernetesObject } from "@kubernetes/client-node";
import { finishedPhases, RunPhase } from "../../../api/v1alpha1.ts";
import { unlessNotFound } from "../kube/api-errors.ts";
import { Controller } from "../kube/controller.ts";
import { objectKey } from "../kube/object-store.ts";
import { rememberFor } from "../kube/ttl-cache.ts";
import type { OperatorMetrics } from "../server/metrics.ts";
import type { ResolverDeps } from "./network-policy.ts";
import type { RunLifecycleDeps } from "./run-lifecycle.ts";
import { RunReconciler } from "./run-reconciler.ts";

export interface RunControllerOptions {
  deps: RunLifecycleDeps;
  workers: number;
  metrics: OperatorMetrics;
}

export function runController({ deps, workers, metrics }: RunControllerOptions): Controller {
  const { runs, jobs, networkPolicies, policies, connections, approvals } = deps.cache;
  const controller = new Controller({
    name: "runs",
    reconciler: new RunReconciler(deps),
    workers,
    logger: deps.logger,
    allKeys: () => runs.list().map(objectKey),
    onDepthChange: (depth) => metrics.queueDepth.set(depth),
    onReconciled: (seconds, ok) =>
      metrics.reconcileDuration.observe({ result: ok ? "ok" : "error" }, seconds),
  });
  const enqueueOwner = (obj: KubernetesObject) => {
    const owner = obj.metadata?.ownerReferences?.find(
      (o) => o.controller && o.kind === "LangGraphRun",
    );
    if (owner) controller.enqueue(`${obj.metadata?.namespace}/${owner.name}`);
  };
  // A policy or Connection change can change the decision for waiting runs and the egress of running ones.
  const enqueueNamespace = (obj: KubernetesObject) => {
    for (const run of runs.list(obj.metadata?.namespace)) {
      if (!finishedPhases.has(run.status?.phase ?? RunPhase.Pending))
        controller.enqueue(objectKey(run));
    }
  };
  runs.onChange((run) => controller.enqueue(objectKey(run)));
  jobs.onChange(enqueueOwner);
  networkPolicies.onChange(enqueueOwner);
  policies.onChange(enqueueNamespace);
  approvals.onChange((approval) =>
    controller.enqueue(`${approval.metadata?.namespace}/${approval.spec.run}`),
  );
  connections.onChange(enqueueNamespace);
  // A tagged pod's run is named after it: its end, or its deletion, ends the run.
  deps.cache.taggedPods.onChange((pod) => controller.enqueue(objectKey(pod)));
  return controller;
}

const lookupTtlMs = 30_000;

/** How a run's NetworkPolicy finds its Connections' addresses; runs sharing one share its lookups for a while (docs/networking.md). */
export function clusterResolver(
  core: CoreV1Api,
  discovery: DiscoveryV1Api,
  clusterDomain: string,
): ResolverDeps {
  const readService = (namespace: string, name: string) =>
    unlessNotFound(core.readNamespacedService({ namespace, name }));
  const readEndpointSlices = async (namespace: string, service: string) =>
    (
      await discovery.listNamespacedEndpointSlice({
        namespace,
        labelSelector: `kubernetes.io/service-name=${service}`,
      })
    ).items;
  return {
    clusterDomain,
    readService: rememberFor(lookupTtlMs, readService),
    readEndpointSlices: rememberFor(lookupTtlMs, readEndpointSlices),
    resolveHost: rememberFor(lookupTtlMs, resolveHost),
  };
}

async function resolveHost(host: string): Promise<string[]> {
  const settled = await Promise.allSettled([resolve4(host), resolve6(host)]);
  return settled.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
}

/** Egress to the operator's API from run pods: its pods when in-cluster, else its address. */
export function operatorEgress(operatorUrl: string, operatorNamespace: string) {
  const url = new URL(operatorUrl);
  const port = Number(url.port || 443);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const ports = [{ protocol: "TCP", port }];
  if (isIP(host))
    return { to: [{ ipBlock: { cidr: `${host}/${isIP(host) === 6 ? 128 : 32}` } }], ports };
  return {
    to: [
      {
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": operatorNamespace } },
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
