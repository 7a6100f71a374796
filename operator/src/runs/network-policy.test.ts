import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1EndpointSlice, V1Service } from "@kubernetes/client-node";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { httpConnection, postgresConnection } from "../testing/connections.ts";
import {
  buildNetworkPolicy,
  classifyHost,
  connectionEndpoint,
  egressRules,
  type ResolverDeps,
} from "./network-policy.ts";

const run: LangGraphRun = {
  metadata: { name: "kb-refresh", namespace: "agents", uid: "u1" },
  spec: { template: { spec: { containers: [{ name: "g" }] } }, access: [], maxDuration: "30m" },
};

function deps(
  services: Record<string, V1Service>,
  dns: Record<string, string[]>,
  slices: Record<string, V1EndpointSlice[]> = {},
): ResolverDeps {
  return {
    clusterDomain: "cluster.local",
    readService: async (namespace, name) => services[`${namespace}/${name}`],
    readEndpointSlices: async (namespace, name) => slices[`${namespace}/${name}`] ?? [],
    resolveHost: async (host) => dns[host] ?? [],
  };
}

describe("connection endpoints", () => {
  it("takes host and port from a postgres connection and from an http URL", () => {
    const pg = postgresConnection("db", { port: 6543 });
    assert.deepEqual(connectionEndpoint(pg), { connection: "db", host: "kb.db.svc", port: 6543 });
    assert.deepEqual(connectionEndpoint(httpConnection("api", "https://api.example.com/v1")), {
      connection: "api",
      host: "api.example.com",
      port: 443,
    });
    const http = httpConnection("api", "http://[::1]:8080");
    assert.deepEqual(connectionEndpoint(http), { connection: "api", host: "::1", port: 8080 });
  });

  it("classifies IPs, Service names and external DNS names", () => {
    assert.deepEqual(classifyHost("10.1.2.3", "agents", "cluster.local"), { kind: "ip" });
    assert.deepEqual(classifyHost("kb", "agents", "cluster.local"), {
      kind: "service",
      namespace: "agents",
      name: "kb",
    });
    assert.deepEqual(classifyHost("kb.db", "agents", "cluster.local"), {
      kind: "service",
      namespace: "db",
      name: "kb",
    });
    assert.deepEqual(classifyHost("kb.db.svc", "agents", "cluster.local"), {
      kind: "service",
      namespace: "db",
      name: "kb",
    });
    assert.deepEqual(classifyHost("kb.db.svc.cluster.local.", "agents", "cluster.local"), {
      kind: "service",
      namespace: "db",
      name: "kb",
    });
    assert.deepEqual(classifyHost("api.example.com", "agents", "cluster.local"), { kind: "dns" });
  });
});

describe("egressRules", () => {
  const rules = (host: string, port: number, d: ResolverDeps) =>
    egressRules({ connection: "c", host, port }, "agents", d);
  const slice = (managedBy: string, address: string, port: number): V1EndpointSlice => ({
    addressType: "IPv4",
    metadata: { labels: { "endpointslice.kubernetes.io/managed-by": managedBy } },
    endpoints: [{ addresses: [address] }],
    ports: [
      { name: "https", port },
      { name: "metrics", port: 9090 },
    ],
  });

  it("turns a Service with a selector into its pods, on the port's target port", async () => {
    const service: V1Service = {
      spec: { selector: { app: "kb-db" }, ports: [{ port: 5432, targetPort: "postgres" }] },
    };
    assert.deepEqual(await rules("kb.db.svc", 5432, deps({ "db/kb": service }, {})), [
      {
        to: [
          {
            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "db" } },
            podSelector: { matchLabels: { app: "kb-db" } },
          },
        ],
        ports: [{ protocol: "TCP", port: "postgres" }],
      },
    ]);
  });

  it("turns endpoints someone else keeps into their addresses and ports", async () => {
    const service: V1Service = { spec: { ports: [{ name: "https", port: 8443 }] } };
    const found = { "agents/kb-api": [slice("e2e.example", "10.244.0.1", 38211)] };
    assert.deepEqual(
      await rules("kb-api.agents.svc", 8443, deps({ "agents/kb-api": service }, {}, found)),
      [{ to: [{ ipBlock: { cidr: "10.244.0.1/32" } }], ports: [{ protocol: "TCP", port: 38211 }] }],
    );
  });

  it("adds slices made by hand to a selector's pods, but not the controller's own", async () => {
    const service: V1Service = {
      spec: { selector: { app: "kb-api" }, ports: [{ name: "https", port: 8443 }] },
    };
    const found = {
      "agents/kb-api": [
        slice("endpointslice-controller.k8s.io", "10.244.0.7", 8443),
        slice("e2e.example", "10.244.0.1", 38211),
      ],
    };
    const [pods, byHand] = await rules(
      "kb-api",
      8443,
      deps({ "agents/kb-api": service }, {}, found),
    );
    assert.deepEqual(pods?.ports, [{ protocol: "TCP", port: 8443 }]);
    assert.deepEqual(byHand, {
      to: [{ ipBlock: { cidr: "10.244.0.1/32" } }],
      ports: [{ protocol: "TCP", port: 38211 }],
    });
  });

  it("allows nothing through a Service that lacks the Connection's port", async () => {
    const service: V1Service = { spec: { selector: { app: "kb" }, ports: [{ port: 80 }] } };
    assert.deepEqual(await rules("kb", 5432, deps({ "agents/kb": service }, {})), []);
  });

  it("turns an external host into the addresses it resolves to", async () => {
    assert.deepEqual(
      await rules(
        "api.example.com",
        443,
        deps({}, { "api.example.com": ["192.0.2.10", "2001:db8::1"] }),
      ),
      [
        {
          to: [{ ipBlock: { cidr: "192.0.2.10/32" } }, { ipBlock: { cidr: "2001:db8::1/128" } }],
          ports: [{ protocol: "TCP", port: 443 }],
        },
      ],
    );
  });

  it("allows nothing for a host that does not resolve", async () => {
    assert.deepEqual(await rules("gone.example.com", 443, deps({}, {})), []);
  });
});

describe("buildNetworkPolicy", () => {
  it("selects the run's pods and allows egress only to endpoints, the operator and DNS", () => {
    const operatorRule = {
      to: [{ ipBlock: { cidr: "10.0.0.5/32" } }],
      ports: [{ protocol: "TCP", port: 8443 }],
    };
    const policy = buildNetworkPolicy(
      run,
      "kb-refresh",
      [{ to: [{ ipBlock: { cidr: "10.1.2.3/32" } }], ports: [{ protocol: "TCP", port: 5432 }] }],
      operatorRule,
    );
    assert.deepEqual(policy.spec?.podSelector, {
      matchLabels: { "langgraph-jit.dev/run": "kb-refresh" },
    });
    assert.deepEqual(policy.spec?.policyTypes, ["Ingress", "Egress"]);
    assert.equal(policy.spec?.ingress, undefined, "no rule: nothing may connect to a run's pod");
    const egress = policy.spec?.egress ?? [];
    assert.equal(egress.length, 3, "the connection's rule, the operator's, DNS");
    assert.deepEqual(egress[0], {
      to: [{ ipBlock: { cidr: "10.1.2.3/32" } }],
      ports: [{ protocol: "TCP", port: 5432 }],
    });
    assert.deepEqual(egress[1], operatorRule);
    assert.deepEqual(
      egress[2]?.ports?.map((p) => p.port),
      [53, 53, "dns", "dns-tcp"],
    );
    assert.equal(policy.metadata?.ownerReferences?.[0]?.uid, "u1");
  });

  it("holds no empty list, which the API server drops: every reconcile would rewrite the policy", () => {
    const policy = buildNetworkPolicy(run, "kb-refresh", [], {
      to: [{ ipBlock: { cidr: "10.0.0.5/32" } }],
      ports: [{ protocol: "TCP", port: 8443 }],
    });
    const empty: string[] = [];
    const walk = (value: unknown, path: string) => {
      if (Array.isArray(value)) {
        if (value.length === 0) empty.push(path);
        for (const [i, item] of value.entries()) walk(item, `${path}[${i}]`);
      } else if (value && typeof value === "object") {
        for (const [key, item] of Object.entries(value)) walk(item, `${path}.${key}`);
      }
    };
    walk(policy.spec, "spec");
    assert.deepEqual(empty, []);
  });
});
