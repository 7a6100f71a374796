// The per-run NetworkPolicy: the run's pods may send traffic only to their connections'
// endpoints, the operator and cluster DNS. NetworkPolicy speaks addresses and pod labels,
// not host names, so each connection host is resolved to peers when the run is reconciled.
import { isIP } from "node:net";
import type {
  V1NetworkPolicy,
  V1NetworkPolicyEgressRule,
  V1NetworkPolicyPeer,
  V1Service,
} from "@kubernetes/client-node";
import type { Connection, LangGraphRun } from "../../../api/v1alpha1.ts";
import { ownerReference, runLabels } from "./job-builder.ts";

export interface Endpoint {
  connection: string;
  host: string;
  port: number;
}

export function connectionEndpoint(connection: Connection): Endpoint {
  const name = connection.metadata?.name ?? "";
  const { postgres, http } = connection.spec;
  if (postgres) return { connection: name, host: postgres.host, port: postgres.port };
  const url = new URL(http?.url ?? "");
  const port = url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
  return { connection: name, host: url.hostname.replace(/^\[|\]$/g, ""), port };
}

export type HostKind =
  | { kind: "ip" }
  | { kind: "service"; namespace: string; name: string }
  | { kind: "dns" };

/** Tells an IP address, an in-cluster Service name and any other DNS name apart. */
export function classifyHost(host: string, runNamespace: string, clusterDomain: string): HostKind {
  if (isIP(host)) return { kind: "ip" };
  const name = host.toLowerCase().replace(/\.$/, "");
  const labels = name.split(".");
  const [service, namespace, svc, ...domain] = labels;
  if (labels.length === 1 && service)
    return { kind: "service", namespace: runNamespace, name: service };
  if (service && namespace && labels.length === 2)
    return { kind: "service", namespace, name: service };
  if (
    service &&
    namespace &&
    svc === "svc" &&
    (domain.length === 0 || domain.join(".") === clusterDomain)
  ) {
    return { kind: "service", namespace, name: service };
  }
  return { kind: "dns" };
}

export interface ResolverDeps {
  readService: (namespace: string, name: string) => Promise<V1Service | undefined>;
  resolveHost: (host: string) => Promise<string[]>;
  clusterDomain: string;
}

function addressPeer(address: string): V1NetworkPolicyPeer {
  return { ipBlock: { cidr: isIP(address) === 6 ? `${address}/128` : `${address}/32` } };
}

/**
 * The peers an endpoint's traffic may go to. A Service with a selector becomes its pods (policy
 * applies after the Service's address is translated to a pod's); any other name becomes the
 * addresses it resolves to now, re-resolved on every reconcile of the run.
 */
export async function resolvePeers(
  endpoint: Endpoint,
  runNamespace: string,
  deps: ResolverDeps,
): Promise<V1NetworkPolicyPeer[]> {
  const host = classifyHost(endpoint.host, runNamespace, deps.clusterDomain);
  if (host.kind === "ip") return [addressPeer(endpoint.host)];
  if (host.kind === "service") {
    const service = await deps.readService(host.namespace, host.name);
    const selector = service?.spec?.selector;
    if (selector && Object.keys(selector).length > 0) {
      return [
        {
          namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": host.namespace } },
          podSelector: { matchLabels: selector },
        },
      ];
    }
    if (service?.spec?.type === "ExternalName" && service.spec.externalName) {
      return (await deps.resolveHost(service.spec.externalName)).map(addressPeer);
    }
  }
  return (await deps.resolveHost(endpoint.host)).map(addressPeer);
}

export interface EgressTarget {
  endpoint: Endpoint;
  peers: V1NetworkPolicyPeer[];
}

/** Cluster DNS, as CoreDNS and kube-dns label their pods. */
const dnsRule: V1NetworkPolicyEgressRule = {
  to: [{ namespaceSelector: {}, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
  ports: [
    { protocol: "UDP", port: 53 },
    { protocol: "TCP", port: 53 },
  ],
};

export function buildNetworkPolicy(
  run: LangGraphRun,
  name: string,
  targets: EgressTarget[],
  operatorRule: V1NetworkPolicyEgressRule,
): V1NetworkPolicy {
  const connectionRules = targets
    .filter((target) => target.peers.length > 0)
    .map(
      (target): V1NetworkPolicyEgressRule => ({
        to: target.peers,
        ports: [{ protocol: "TCP", port: target.endpoint.port }],
      }),
    );
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: {
      name,
      namespace: run.metadata?.namespace,
      labels: runLabels(run),
      ownerReferences: [ownerReference(run)],
    },
    spec: {
      podSelector: { matchLabels: runLabels(run) },
      policyTypes: ["Egress"],
      egress: [...connectionRules, operatorRule, dnsRule],
    },
  };
}
