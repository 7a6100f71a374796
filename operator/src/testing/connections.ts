// Connections for unit tests: the knowledge-base database and API of DESIGN.md's examples.
import type {
  AnyConnection,
  ClusterConnection,
  Connection,
  ConnectionSpec,
} from "../../../api/v1alpha1.ts";
import type { NamespaceConnections } from "../policy/namespace-connections.ts";

type PostgresSpec = NonNullable<ConnectionSpec["postgres"]>;

export function postgresConnection(
  name = "kb-postgres",
  postgres: Partial<PostgresSpec> = {},
): Connection {
  return {
    metadata: { name },
    spec: {
      postgres: {
        host: "kb.db.svc",
        port: 5432,
        database: "kb",
        sslMode: "verify-full",
        credentials: { secretRef: { name: "kb-admin" } },
        ...postgres,
      },
    },
  };
}

export function httpConnection(name = "kb-api", url = "https://kb-api.internal"): Connection {
  return { metadata: { name }, spec: { http: { url } } };
}

/** What a namespace may name when nothing is ambiguous: these connections. */
export function offered(...connections: AnyConnection[]): NamespaceConnections {
  return { connections, ambiguous: new Set() };
}

/** The platform's version of a connection, offered to the namespaces the selector selects. */
export function clusterConnection(
  connection: Connection,
  namespaceSelector: ClusterConnection["spec"]["namespaceSelector"],
): ClusterConnection {
  return {
    kind: "ClusterConnection",
    metadata: { name: connection.metadata?.name },
    spec: { ...connection.spec, namespaceSelector },
  };
}
