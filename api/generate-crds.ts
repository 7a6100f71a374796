// Derives crds/clusterconnections.yaml from crds/connections.yaml: a ClusterConnection is a
// Connection the platform holds, cluster-scoped, with a namespaceSelector, its Secrets in the
// operator's credentials namespace. `make generate` rewrites it; a unit test fails when stale.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { crdDir } from "./generate-types.ts";

export const clusterConnectionsFile = join(crdDir, "clusterconnections.yaml");

const labelSelector = {
  type: "object",
  description:
    "The namespaces whose AccessPolicies may grant this connection (a label selector; {} " +
    "selects every namespace). Select on labels only the platform may set, such as " +
    "kubernetes.io/metadata.name.",
  "x-kubernetes-map-type": "atomic",
  properties: {
    matchLabels: { type: "object", additionalProperties: { type: "string", maxLength: 63 } },
    matchExpressions: {
      type: "array",
      maxItems: 32,
      items: {
        type: "object",
        required: ["key", "operator"],
        properties: {
          key: { type: "string", minLength: 1, maxLength: 317 },
          operator: { type: "string", enum: ["In", "NotIn", "Exists", "DoesNotExist"] },
          values: { type: "array", maxItems: 256, items: { type: "string", maxLength: 63 } },
        },
      },
    },
  },
};

export function generateClusterConnections(): string {
  const source = readFileSync(join(crdDir, "connections.yaml"), "utf8")
    .replaceAll(
      "A key of a Secret in the same namespace.",
      "A key of a Secret in the operator's credentials namespace.",
    )
    .replaceAll(
      "Secret in the Connection's namespace with",
      "Secret in the operator's credentials namespace with",
    );
  const crd = parse(source);
  crd.metadata.name = "clusterconnections.langgraph-jit.dev";
  crd.spec.scope = "Cluster";
  crd.spec.names = {
    kind: "ClusterConnection",
    listKind: "ClusterConnectionList",
    plural: "clusterconnections",
    singular: "clusterconnection",
    shortNames: ["lgcconn"],
    categories: ["langgraph-jit"],
  };
  for (const version of crd.spec.versions) {
    const schema = version.schema.openAPIV3Schema;
    schema.description =
      "A downstream resource the platform holds for the namespaces it selects: its credentials " +
      "live in the operator's credentials namespace, which no team reads, and AccessPolicies " +
      "grant it by name only where namespaceSelector selects their namespace.";
    const spec = schema.properties.spec;
    spec.required = ["namespaceSelector"];
    spec.properties = { namespaceSelector: labelSelector, ...spec.properties };
  }
  return (
    "# Generated from connections.yaml by api/generate-crds.ts: do not edit, run `make generate`.\n" +
    stringify(crd, { lineWidth: 0 })
  );
}

if (import.meta.main) {
  writeFileSync(clusterConnectionsFile, generateClusterConnections());
  console.log(`wrote ${clusterConnectionsFile}`);
}
