// Keeps a Connection from disappearing while a run may still hold a credential minted through
// it: revocation needs the Connection's server and admin Secret to drop the run's role or
// revoke its token. Like the API server's pvc-protection, a finalizer holds the deletion. A
// ClusterConnection is held while a run of any namespace names it.
import type { Logger } from "pino";
import {
  type ClusterConnection,
  type Connection,
  connectionFinalizer,
  type LangGraphRun,
  resources,
} from "../../../api/v1alpha1.ts";
import { unlessNotFound } from "../kube/api-errors.ts";
import type { WatchedCache } from "../kube/cache.ts";
import { Controller, type Reconciler } from "../kube/controller.ts";
import type { Finalizers } from "../kube/finalizers.ts";
import { objectKey } from "../kube/object-store.ts";

/** Whether the run may hold a credential minted through the Connection that is not revoked. */
export function holdsCredentialThrough(run: LangGraphRun, connection: string): boolean {
  return (
    Boolean(run.status?.startedAt) &&
    !run.status?.credential?.revokedAt &&
    run.spec.access.some((access) => access.connection === connection)
  );
}

export interface ConnectionProtectionDeps {
  connections: WatchedCache<Connection>;
  clusterConnections: WatchedCache<ClusterConnection>;
  runs: WatchedCache<LangGraphRun>;
  finalizers: Finalizers;
}

export class ConnectionProtection implements Reconciler {
  readonly #deps: ConnectionProtectionDeps;

  constructor(deps: ConnectionProtectionDeps) {
    this.#deps = deps;
  }

  /** Adds the finalizer while a run needs the connection, removes it once none does. */
  async reconcile(key: string): Promise<undefined> {
    const { connections, clusterConnections, runs, finalizers } = this.#deps;
    const [namespace, name] = key.includes("/") ? key.split("/") : [undefined, key];
    const [plural, connection] = namespace
      ? [resources.connections, connections.get(namespace, name ?? "")]
      : [resources.clusterConnections, clusterConnections.get("", name ?? "")];
    if (!connection) return;
    const needed = runs.list(namespace).some((run) => holdsCredentialThrough(run, name ?? ""));
    if (!needed) {
      await finalizers.remove(plural, connection, connectionFinalizer);
      return;
    }
    // A deleting object takes no new finalizers; its runs are revoked through it meanwhile.
    if (connection.metadata?.deletionTimestamp) return;
    await unlessNotFound(finalizers.add(plural, connection, connectionFinalizer));
  }
}

/** Re-checks a Connection whenever it or a run using it changes. */
export function connectionProtectionController(
  deps: ConnectionProtectionDeps,
  logger: Logger,
): Controller {
  const controller = new Controller({
    name: "connection-protection",
    reconciler: new ConnectionProtection(deps),
    workers: 1,
    logger,
    allKeys: () => [...deps.connections.list(), ...deps.clusterConnections.list()].map(objectKey),
  });
  deps.connections.onChange((connection) => controller.enqueue(objectKey(connection)));
  deps.clusterConnections.onChange((connection) => controller.enqueue(objectKey(connection)));
  deps.runs.onChange((run) => {
    for (const { connection } of run.spec.access ?? []) {
      controller.enqueue(`${run.metadata?.namespace}/${connection}`);
      controller.enqueue(connection);
    }
  });
  return controller;
}
