// Which connections a namespace may name (ADR 0011): its own Connections, and the
// ClusterConnections the platform offers it through their namespaceSelector. A name both define
// is ambiguous and names neither, so a team's Connection can never quietly stand in for the
// platform's. Decided from the shared cache at every decision, so a namespace that loses the
// selector's label loses the access.
import type { V1Namespace } from "@kubernetes/client-node";
import type { AnyConnection, ClusterConnection, Connection } from "../../../api/v1alpha1.ts";
import type { Cache } from "../kube/cache.ts";

export interface NamespaceConnections {
  /** The ones it may name, each name once. */
  connections: AnyConnection[];
  /** Names a Connection of the namespace and an offered ClusterConnection both use. */
  ambiguous: ReadonlySet<string>;
}

/** Only a ClusterConnection has a namespaceSelector (its schema requires one). */
export const isClusterConnection = (connection: AnyConnection): connection is ClusterConnection =>
  "namespaceSelector" in connection.spec;

/**
 * Whether a label selector selects these labels, as Kubernetes reads one: every matchLabels
 * pair and every expression must hold; an empty selector selects everything. An operator it
 * does not know selects nothing.
 */
export function selectorMatches(
  selector: ClusterConnection["spec"]["namespaceSelector"],
  labels: Readonly<Record<string, string>>,
): boolean {
  const pairs = Object.entries(selector.matchLabels ?? {});
  if (!pairs.every(([key, value]) => labels[key] === value)) return false;
  return (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
    const value = labels[key];
    switch (operator) {
      case "In":
        return value !== undefined && values.includes(value);
      case "NotIn":
        return value === undefined || !values.includes(value);
      case "Exists":
        return value !== undefined;
      case "DoesNotExist":
        return value === undefined;
      default:
        return false;
    }
  });
}

/**
 * The connections `namespace` may name. `namespaceLabels` is undefined when the namespace is
 * not known (yet): then no ClusterConnection is offered to it.
 */
export function namespaceConnections(
  namespace: string,
  namespaceLabels: Readonly<Record<string, string>> | undefined,
  own: readonly Connection[],
  cluster: readonly ClusterConnection[],
): NamespaceConnections {
  const local = own.filter((c) => c.metadata?.namespace === namespace);
  const offered = namespaceLabels
    ? cluster.filter((c) => selectorMatches(c.spec.namespaceSelector, namespaceLabels))
    : [];
  const localNames = new Set(local.map((c) => c.metadata?.name));
  const ambiguous = new Set(
    offered.map((c) => c.metadata?.name ?? "").filter((name) => localNames.has(name)),
  );
  const connections = [...local, ...offered].filter((c) => !ambiguous.has(c.metadata?.name ?? ""));
  return { connections, ambiguous };
}

/** Where a connection's Secrets are read: its own namespace, or the credentials namespace. */
export function secretNamespaceOf(connection: AnyConnection, credentialsNamespace: string): string {
  return isClusterConnection(connection)
    ? credentialsNamespace
    : (connection.metadata?.namespace ?? credentialsNamespace);
}

/**
 * What a run's minted tokens are recorded under for this connection: a namespaced Connection's
 * name (as before ClusterConnections), `ClusterConnection.<name>` for the platform's. No
 * Connection name has capitals, so a team's same-named Connection is never handed the
 * platform's tokens to revoke, nor the platform's revocation endpoint the team's.
 */
export function tokenRecordKey(connection: AnyConnection): string {
  const name = connection.metadata?.name ?? "";
  return isClusterConnection(connection) ? `ClusterConnection.${name}` : name;
}

/** The caches connections are read from: ClusterObjects has them all. */
export interface ConnectionCaches {
  connections: Cache<Connection>;
  clusterConnections: Cache<ClusterConnection>;
  namespaces: Cache<V1Namespace>;
}

/** The connections `namespace` may name now. */
export function connectionsIn(caches: ConnectionCaches, namespace: string): NamespaceConnections {
  const known = caches.namespaces.get("", namespace);
  return namespaceConnections(
    namespace,
    known ? (known.metadata?.labels ?? {}) : undefined,
    caches.connections.list(namespace),
    caches.clusterConnections.list(),
  );
}

/** The connection `namespace` means by `name` now; undefined when none or ambiguous. */
export function connectionIn(
  caches: ConnectionCaches,
  namespace: string,
  name: string,
): AnyConnection | undefined {
  return connectionsIn(caches, namespace).connections.find((c) => c.metadata?.name === name);
}

/**
 * What a run's credentials on `name` are revoked through: the connection the name means now
 * or, when it means none now (the selector no longer offers it, or a Connection of the same
 * name made it ambiguous), every one it may have meant when they were issued.
 */
export function connectionsToRevoke(
  caches: ConnectionCaches,
  namespace: string,
  name: string,
): AnyConnection[] {
  const meant = connectionIn(caches, namespace, name);
  if (meant) return [meant];
  return [caches.connections.get(namespace, name), caches.clusterConnections.get("", name)].flatMap(
    (c) => c ?? [],
  );
}
