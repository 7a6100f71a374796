// A knowledge-base API for runs on the test node: a real HTTPS server with its own CA on the
// node's bridge address, reached from pods as Service kb-api (an EndpointSlice of our own points
// the Service at this process), with a Connection that holds its bearer token and CA.
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { CoreV1Api, DiscoveryV1Api } from "@kubernetes/client-node";
import { type Connection, group, version } from "../../api/v1alpha1.ts";
import {
  generateCertificateAuthority,
  issueServingCertificate,
} from "../../operator/src/admission/webhook-certs.ts";
import { kubeConfigFor, statusOf } from "./cluster.ts";
import { testNode } from "./postgres.ts";

export interface SeenRequest {
  method: string;
  path: string;
  authorization: string | undefined;
}

export interface KbApi {
  /** The bearer token only the operator and the sidecar may hold. */
  token: string;
  connection: Connection;
  requests: SeenRequest[];
  stop(): Promise<void>;
}

/** Documents whose author e-mail and payment note a grant's masking should hide. */
export const kbDocuments = {
  items: [
    {
      id: 1,
      title: "Rotating keys",
      author_email: "ann@example.com",
      note: "paid with 4111 1111 1111 1111",
    },
    { id: 2, title: "Run budgets", author_email: "bo@example.com", note: "no payment" },
  ],
};

/**
 * Starts the API and creates its Service endpoint in namespace, and its Secret in
 * secretNamespace (the credentials namespace, for a ClusterConnection).
 */
export async function startKbApi(namespace: string, secretNamespace = namespace): Promise<KbApi> {
  const token = randomBytes(18).toString("base64url");
  const authority = await generateCertificateAuthority({
    commonName: "kb-api-test-ca",
    validityDays: 1,
  });
  const serving = await issueServingCertificate(authority, {
    dnsNames: [`kb-api.${namespace}.svc`],
    ipAddresses: [testNode.address],
    validityDays: 1,
  });
  const requests: SeenRequest[] = [];
  const server: Server = createServer(
    { cert: serving.certPem, key: serving.keyPem },
    (req, res) => {
      requests.push({
        method: req.method ?? "",
        path: req.url ?? "",
        authorization: req.headers.authorization,
      });
      req.resume();
      if (req.headers.authorization !== `Bearer ${token}`) {
        res.writeHead(401).end();
      } else if (req.method === "GET" && req.url?.startsWith("/v1/docs")) {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(kbDocuments));
      } else {
        res.writeHead(201, { "content-type": "application/json" }).end('{"created":true}');
      }
    },
  );
  await new Promise<void>((resolve) => server.listen(0, testNode.address, resolve));
  const { port } = server.address() as AddressInfo;

  const admin = kubeConfigFor("admin");
  const core = admin.makeApiClient(CoreV1Api);
  const discovery = admin.makeApiClient(DiscoveryV1Api);
  // Started again in the same namespace (make demo twice), it replaces what it made before.
  const gone = (error: unknown) => {
    if (statusOf(error) !== 404) throw error;
  };
  await core.deleteNamespacedSecret({ namespace: secretNamespace, name: "kb-api" }).catch(gone);
  await discovery.deleteNamespacedEndpointSlice({ namespace, name: "kb-api-host" }).catch(gone);
  await core.createNamespacedSecret({
    namespace: secretNamespace,
    body: {
      metadata: { name: "kb-api" },
      stringData: { token, "ca.crt": authority.certPem },
    },
  });
  // setUpRunNamespace may have made the Service already (one unnamed port, like this one).
  await core
    .createNamespacedService({
      namespace,
      body: { metadata: { name: "kb-api" }, spec: { ports: [{ port: 8443 }] } },
    })
    .catch((error: unknown) => {
      if (statusOf(error) !== 409) throw error;
    });
  await discovery.createNamespacedEndpointSlice({
    namespace,
    body: {
      metadata: {
        name: "kb-api-host",
        labels: {
          "kubernetes.io/service-name": "kb-api",
          "endpointslice.kubernetes.io/managed-by": "e2e.langgraph-jit.dev",
        },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: [testNode.address], conditions: { ready: true } }],
      ports: [{ name: "", port, protocol: "TCP" }],
    },
  });
  const connection: Connection = {
    apiVersion: `${group}/${version}`,
    kind: "Connection",
    metadata: { name: "kb-api" },
    spec: {
      http: {
        url: `https://kb-api.${namespace}.svc:8443`,
        caSecretRef: { name: "kb-api", key: "ca.crt" },
        auth: { bearer: { secretRef: { name: "kb-api", key: "token" } } },
      },
    },
  };
  return {
    token,
    connection,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
