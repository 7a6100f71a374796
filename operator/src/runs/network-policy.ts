// The per-run NetworkPolicy: the run's pods may send traffic only to their connections'
// endpoints, the operator and cluster DNS, and nothing may connect to them. NetworkPolicy
// speaks addresses, pod labels and the ports packets carry after a Service address was
// translated, so each connection host is resolved to peers and ports on every reconcile.
import { isIP } from "node:net";
import type {
  IntOrString,
  V1EndpointSlice,
  V1NetworkPolicy,
  V1NetworkPolicyEgressRule,
  V1NetworkPolicyPeer,
  V1NetworkPolicyPort,
  V1Service,
} from "@kubernetes/client-node";
import type { AnyConnection, LangGraphRun } from "../../../api/v1alpha1.ts";
import { ownerReference, runLabels } from "./job-builder.ts";

export interface Endpoint {
  connection: string;
  host: string;
  port: number;
}

export function connectionEndpoint(connection: AnyConnection): Endpoint {
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
  /** The EndpointSlices of a Service without a selector, which someone else keeps. */
  readEndpointSlices: (namespace: string, service: string) => Promise<V1EndpointSlice[]>;
  resolveHost: (host: string) => Promise<string[]>;
  clusterDomain: string;
}

function addressPeer(address: string): V1NetworkPolicyPeer {
  return { ipBlock: { cidr: isIP(address) === 6 ? `${address}/128` : `${address}/32` } };
}

const tcp = (port: IntOrString): V1NetworkPolicyPort => ({ protocol: "TCP", port });

/** The endpoint-slice controller's mark on the slices it keeps for a Service's selector. */
const sliceController = "endpointslice-controller.k8s.io";

/**
 * The egress rules that let traffic reach an endpoint, as a policy sees it: after a Service's
 * address is translated to one of its endpoints. A Service's selector becomes its pods on the
 * target port; endpoints someone else keeps (a selector-less Service, or slices added by hand)
 * become their addresses on their ports; an ExternalName, or any other name, becomes the
 * addresses it resolves to now. A Service without the Connection's port allows nothing.
 */
export async function egressRules(
  endpoint: Endpoint,
  runNamespace: string,
  deps: ResolverDeps,
): Promise<V1NetworkPolicyEgressRule[]> {
  const byAddress = async (host: string, port: number) => {
    const addresses = await deps.resolveHost(host);
    return addresses.length ? [{ to: addresses.map(addressPeer), ports: [tcp(port)] }] : [];
  };
  const host = classifyHost(endpoint.host, runNamespace, deps.clusterDomain);
  if (host.kind === "ip")
    return [{ to: [addressPeer(endpoint.host)], ports: [tcp(endpoint.port)] }];
  if (host.kind === "dns") return byAddress(endpoint.host, endpoint.port);
  const service = await deps.readService(host.namespace, host.name);
  if (!service) return byAddress(endpoint.host, endpoint.port);
  if (service.spec?.type === "ExternalName" && service.spec.externalName) {
    return byAddress(service.spec.externalName, endpoint.port);
  }
  const servicePort = service.spec?.ports?.find((p) => p.port === endpoint.port);
  if (!servicePort) return [];
  const rules: V1NetworkPolicyEgressRule[] = [];
  const selector = service.spec?.selector;
  const selects = selector !== undefined && Object.keys(selector).length > 0;
  if (selects) {
    rules.push({
      to: [
        {
          namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": host.namespace } },
          podSelector: { matchLabels: selector },
        },
      ],
      ports: [tcp(servicePort.targetPort ?? servicePort.port)],
    });
  }
  const slices = (await deps.readEndpointSlices(host.namespace, host.name)).filter(
    (slice) =>
      !selects ||
      slice.metadata?.labels?.["endpointslice.kubernetes.io/managed-by"] !== sliceController,
  );
  const addresses = new Set(
    slices.flatMap((slice) => (slice.endpoints ?? []).flatMap((e) => e.addresses)),
  );
  const ports = new Set(
    slices.flatMap((slice) =>
      (slice.ports ?? [])
        .filter((p) => (p.name ?? "") === (servicePort.name ?? "") && p.port !== undefined)
        .map((p) => p.port as number),
    ),
  );
  if (addresses.size > 0 && ports.size > 0) {
    rules.push({ to: [...addresses].map(addressPeer), ports: [...ports].map(tcp) });
  }
  return rules;
}

/**
 * Cluster DNS, as CoreDNS and kube-dns label their pods: port 53, or the ports they name dns
 * and dns-tcp when they listen elsewhere (a non-root CoreDNS behind a Service on 53).
 */
const dnsRule: V1NetworkPolicyEgressRule = {
  to: [{ namespaceSelector: {}, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
  ports: [
    { protocol: "UDP", port: 53 },
    { protocol: "TCP", port: 53 },
    { protocol: "UDP", port: "dns" },
    { protocol: "TCP", port: "dns-tcp" },
  ],
};

export function buildNetworkPolicy(
  run: LangGraphRun,
  name: string,
  connectionRules: V1NetworkPolicyEgressRule[],
  operatorRule: V1NetworkPolicyEgressRule,
): V1NetworkPolicy {
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
      // Ingress without rules (the API server drops an empty list): nothing connects to a run's
      // pod, so nothing leaves it as an answer. A tagged pod is a service others call.
      policyTypes: run.spec.source ? ["Egress"] : ["Ingress", "Egress"],
      egress: [...connectionRules, operatorRule, dnsRule],
    },
  };
}
