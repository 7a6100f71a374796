// Connections for unit tests: the knowledge-base database and API of DESIGN.md's examples.
import type { Connection, ConnectionSpec } from "../../../api/v1alpha1.ts";

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
