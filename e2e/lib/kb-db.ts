// The knowledge-base PostgreSQL for runs on the test node: a real PostgreSQL 15 on the node's
// bridge address with TLS from its own CA (verify-full for kb-db.<namespace>.svc), reached from
// pods as Service kb-db (an EndpointSlice of our own points the Service at it), with documents
// whose author e-mails a grant masks and a Connection that mints a role per run.
import { CoreV1Api, DiscoveryV1Api } from "@kubernetes/client-node";
import { type Connection, group, version } from "../../api/v1alpha1.ts";
import {
  generateCertificateAuthority,
  issueServingCertificate,
} from "../../operator/src/admission/webhook-certs.ts";
import { kubeConfigFor, statusOf } from "./cluster.ts";
import { type PostgresServer, startPostgres, testNode } from "./postgres.ts";

export interface KbDb {
  server: PostgresServer;
  connection: Connection;
  stop(): Promise<void>;
}

/** Documents with an author e-mail (masked by column) and a note (masked by detectors). */
export const kbRows = [
  {
    title: "Rotating keys",
    author_email: "ann@example.com",
    note: "paid with 4111 1111 1111 1111",
  },
  { title: "Run budgets", author_email: "bo@example.com", note: "no payment" },
];

/**
 * Starts the database and creates its Service endpoint in namespace, and its Secrets in
 * secretNamespace (the credentials namespace, for a ClusterConnection).
 */
export async function startKbDb(namespace: string, secretNamespace = namespace): Promise<KbDb> {
  const authority = await generateCertificateAuthority({
    commonName: "kb-db-test-ca",
    validityDays: 1,
  });
  const serving = await issueServingCertificate(authority, {
    dnsNames: [`kb-db.${namespace}.svc`],
    ipAddresses: [testNode.address],
    validityDays: 1,
  });
  const server = await startPostgres({ nodeAccess: true, tls: serving });
  const kb = await server.connect(server.adminUser, server.adminPassword, "kb");
  try {
    await kb.query("ALTER TABLE public.docs ADD COLUMN author_email text, ADD COLUMN note text");
    await kb.query("DELETE FROM public.docs");
    for (const row of kbRows) {
      await kb.query("INSERT INTO public.docs (title, author_email, note) VALUES ($1, $2, $3)", [
        row.title,
        row.author_email,
        row.note,
      ]);
    }
    // LangGraph's checkpointer creates its tables in public, which kb_owner (ddl) owns, after a
    // CREATE SCHEMA IF NOT EXISTS that needs CREATE on the database.
    await kb.query("GRANT CREATE ON SCHEMA public TO kb_owner");
    await kb.query("GRANT CREATE ON DATABASE kb TO kb_owner");
  } finally {
    await kb.end();
  }

  const admin = kubeConfigFor("admin");
  const core = admin.makeApiClient(CoreV1Api);
  const discovery = admin.makeApiClient(DiscoveryV1Api);
  const gone = (error: unknown) => {
    if (statusOf(error) !== 404) throw error;
  };
  // Started again in the same namespace (make demo twice), it replaces what it made before.
  for (const name of ["kb-admin", "kb-db-ca"])
    await core.deleteNamespacedSecret({ namespace: secretNamespace, name }).catch(gone);
  await discovery.deleteNamespacedEndpointSlice({ namespace, name: "kb-db-host" }).catch(gone);
  await core.createNamespacedSecret({
    namespace: secretNamespace,
    body: {
      metadata: { name: "kb-admin" },
      stringData: { username: server.kb.adminUser, password: server.kb.adminPassword },
    },
  });
  await core.createNamespacedSecret({
    namespace: secretNamespace,
    body: { metadata: { name: "kb-db-ca" }, stringData: { "ca.crt": authority.certPem } },
  });
  await core
    .createNamespacedService({
      namespace,
      body: { metadata: { name: "kb-db" }, spec: { ports: [{ port: 5432 }] } },
    })
    .catch((error: unknown) => {
      if (statusOf(error) !== 409) throw error;
    });
  await discovery.createNamespacedEndpointSlice({
    namespace,
    body: {
      metadata: {
        name: "kb-db-host",
        labels: {
          "kubernetes.io/service-name": "kb-db",
          "endpointslice.kubernetes.io/managed-by": "e2e.langgraph-jit.dev",
        },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: [testNode.address], conditions: { ready: true } }],
      ports: [{ name: "", port: server.port, protocol: "TCP" }],
    },
  });
  const connection: Connection = {
    apiVersion: `${group}/${version}`,
    kind: "Connection",
    metadata: { name: "kb-postgres" },
    spec: {
      postgres: {
        host: `kb-db.${namespace}.svc`,
        port: 5432,
        database: "kb",
        sslMode: "verify-full",
        caSecretRef: { name: "kb-db-ca", key: "ca.crt" },
        credentials: {
          secretRef: { name: "kb-admin" },
          dynamic: {
            actionRoles: {
              read: server.kb.actionRoles.read,
              write: server.kb.actionRoles.write,
              ddl: server.kb.actionRoles.ddl,
            },
          },
        },
      },
    },
  };
  return { server, connection, stop: () => server.stop() };
}
