// Fixtures for end-to-end tests of LangGraphRuns: a namespace with Connections, policies and
// RBAC that lets the test identities create runs, and typed access to the runs.
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
  type V1Job,
} from "@kubernetes/client-node";
import {
  type AccessPolicy,
  type ClusterConnection,
  type Connection,
  type LangGraphRun,
  type RunPhase,
  resources,
} from "../../api/v1alpha1.ts";
import { eventually, type Identity, kubeConfigFor, statusOf } from "./cluster.ts";

const group = "langgraph-jit.dev";
const version = "v1alpha1";

export function customObjects(identity: Identity = "admin"): CustomObjectsApi {
  return kubeConfigFor(identity).makeApiClient(CustomObjectsApi);
}

export async function createObject<T>(
  identity: Identity,
  namespace: string,
  plural: string,
  body: T,
): Promise<T> {
  return (await customObjects(identity).createNamespacedCustomObject({
    group,
    version,
    namespace,
    plural,
    body,
  })) as T;
}

/**
 * The platform's version of a test's Connection, offered to these namespaces by name. Replaces
 * one a failed run of the test left behind.
 */
export async function offerClusterConnection(
  connection: Connection,
  namespaces: string[],
): Promise<ClusterConnection> {
  const name = connection.metadata?.name ?? "";
  await deleteClusterConnection(name);
  return (await customObjects().createClusterCustomObject({
    group,
    version,
    plural: resources.clusterConnections,
    body: {
      apiVersion: `${group}/${version}`,
      kind: "ClusterConnection",
      metadata: { name },
      spec: {
        ...connection.spec,
        namespaceSelector: {
          matchExpressions: [
            { key: "kubernetes.io/metadata.name", operator: "In", values: namespaces },
          ],
        },
      },
    } satisfies ClusterConnection,
  })) as ClusterConnection;
}

/** Deletes a ClusterConnection, not waiting for its runs' revocation to release it. */
export async function deleteClusterConnection(name: string): Promise<void> {
  await customObjects()
    .deleteClusterCustomObject({ group, version, plural: resources.clusterConnections, name })
    .catch((error: unknown) => {
      if (statusOf(error) !== 404) throw error;
    });
}

/**
 * Connections (kb-postgres and kb-api unless given), an AccessPolicy for group ml-platform and
 * RBAC so alice and mallory may create runs.
 */
export async function setUpRunNamespace(
  namespace: string,
  policy: Partial<AccessPolicy["spec"]> = {},
  connections: Connection[] = defaultConnections(namespace),
) {
  const admin = kubeConfigFor("admin");
  const core = admin.makeApiClient(CoreV1Api);
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({
    namespace,
    body: {
      metadata: { name: "run-author" },
      rules: [
        {
          apiGroups: [group],
          resources: ["langgraphruns"],
          verbs: ["create", "get", "list", "watch", "update", "patch", "delete"],
        },
      ],
    },
  });
  // Who may decide is the webhook's to say; RBAC lets anyone authenticated ask (the chart's
  // langgraph-jit-approver ClusterRole, less the runs run-author already reads).
  await rbac.createNamespacedRole({
    namespace,
    body: {
      metadata: { name: "approver" },
      rules: [
        { apiGroups: [group], resources: ["approvals"], verbs: ["create", "get", "list"] },
        { apiGroups: [group], resources: ["heldcommands"], verbs: ["get", "list", "watch"] },
      ],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace,
    body: {
      metadata: { name: "approvers" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "approver" },
      subjects: [
        { apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "system:authenticated" },
      ],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace,
    body: {
      metadata: { name: "run-authors" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "run-author" },
      subjects: [
        { apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "system:authenticated" },
      ],
    },
  });
  for (const [name, port] of [
    ["kb-db", 5432],
    ["kb-api", 8443],
  ] as const) {
    await core.createNamespacedService({
      namespace,
      body: { metadata: { name }, spec: { selector: { app: name }, ports: [{ port }] } },
    });
  }
  for (const connection of connections)
    await createObject("admin", namespace, "connections", connection);
  await createObject<AccessPolicy>("admin", namespace, "accesspolicies", {
    apiVersion: `${group}/${version}`,
    kind: "AccessPolicy",
    metadata: { name: "ml-platform" },
    spec: {
      subjects: [{ kind: "Group", name: "ml-platform" }],
      maxDuration: "1h",
      grants: [
        { connection: "kb-postgres", actions: ["read", "write"] },
        { connection: "kb-api", actions: ["read"] },
      ],
      ...policy,
    },
  });
}

function defaultConnections(namespace: string): Connection[] {
  return [
    {
      apiVersion: `${group}/${version}`,
      kind: "Connection",
      metadata: { name: "kb-postgres" },
      spec: {
        postgres: {
          host: `kb-db.${namespace}.svc`,
          port: 5432,
          database: "kb",
          sslMode: "disable",
          credentials: { secretRef: { name: "kb-admin" } },
        },
      },
    },
    {
      apiVersion: `${group}/${version}`,
      kind: "Connection",
      metadata: { name: "kb-api" },
      spec: { http: { url: `https://kb-api.${namespace}.svc:8443` } },
    },
  ];
}

export function runManifest(name: string, spec: Partial<LangGraphRun["spec"]> = {}): LangGraphRun {
  return {
    apiVersion: `${group}/${version}`,
    kind: "LangGraphRun",
    metadata: { name },
    spec: {
      template: {
        spec: {
          containers: [{ name: "graph", image: "example.invalid/kb-graph:1.4", args: ["refresh"] }],
        },
      },
      access: [
        { connection: "kb-postgres", actions: ["read", "write"] },
        { connection: "kb-api", actions: ["read"] },
      ],
      maxDuration: "30m",
      reason: "e2e",
      ...spec,
    },
  };
}

export async function createRun(
  identity: Identity,
  namespace: string,
  run: LangGraphRun,
): Promise<LangGraphRun> {
  return createObject(identity, namespace, "langgraphruns", run);
}

export async function deleteRun(identity: Identity, namespace: string, name: string) {
  await customObjects(identity).deleteNamespacedCustomObject({
    group,
    version,
    namespace,
    plural: "langgraphruns",
    name,
  });
}

/**
 * A namespace whose only Connection is kb-api, an HTTP API with a bearer secret, granted to
 * group ml-platform for read; with credentialsNamespace, a ClusterConnection offered to it.
 */
export async function setUpBearerApiNamespace(
  namespace: string,
  token: string,
  options: { credentialsNamespace?: string } = {},
): Promise<void> {
  // The platform's ClusterConnection keeps its token in the credentials namespace.
  const platform = options.credentialsNamespace;
  await kubeConfigFor("admin")
    .makeApiClient(CoreV1Api)
    .createNamespacedSecret({
      namespace: platform ?? namespace,
      body: { metadata: { name: "kb-api-token" }, stringData: { token } },
    });
  const kbApi: Connection = {
    apiVersion: `${group}/${version}`,
    kind: "Connection",
    metadata: { name: "kb-api" },
    spec: {
      http: {
        url: "https://kb-api.example.invalid",
        auth: { bearer: { secretRef: { name: "kb-api-token", key: "token" } } },
      },
    },
  };
  if (platform) await offerClusterConnection(kbApi, [namespace]);
  await setUpRunNamespace(
    namespace,
    { grants: [{ connection: "kb-api", actions: ["read"] }] },
    platform ? [] : [kbApi],
  );
}

export async function readRun(namespace: string, name: string): Promise<LangGraphRun | undefined> {
  try {
    return (await customObjects().getNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: "langgraphruns",
      name,
    })) as LangGraphRun;
  } catch (error) {
    if (statusOf(error) === 404) return undefined;
    throw error;
  }
}

export async function waitForPhase(
  namespace: string,
  name: string,
  phase: RunPhase,
  timeoutMs = 30_000,
) {
  let last: LangGraphRun | undefined;
  return eventually(
    `run ${name} to be ${phase}`,
    async () => {
      last = await readRun(namespace, name);
      return last?.status?.phase === phase ? last : undefined;
    },
    timeoutMs,
  ).catch((error: Error) => {
    const seen = last ? JSON.stringify(last.status ?? {}) : "no such run";
    throw new Error(`${error.message}; last seen: ${seen}`, { cause: error });
  });
}

export async function jobsOfRun(namespace: string, name: string): Promise<V1Job[]> {
  const batch = kubeConfigFor("admin").makeApiClient(BatchV1Api);
  const list = await batch.listNamespacedJob({
    namespace,
    labelSelector: `langgraph-jit.dev/run=${name}`,
  });
  return list.items;
}

/**
 * The example graph's JSON summary from its container log. The log interleaves stdout and
 * stderr in no fixed order, so the summary is the last line that is a JSON object, not the last line.
 */
export function graphSummary(log: string) {
  const line = log
    .trim()
    .split("\n")
    .findLast((candidate) => candidate.startsWith("{"));
  return JSON.parse(line ?? "{}");
}
