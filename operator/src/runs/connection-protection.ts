// Keeps a Connection from disappearing while a run may still hold a credential minted through
// it: revocation needs the Connection's server and admin Secret to drop the run's role or
// revoke its token. Like the API server's pvc-protection, a finalizer holds the deletion.
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import {
  type Connection,
  connectionFinalizer,
  group,
  type LangGraphRun,
  resources,
  version,
} from "../../../api/v1alpha1.ts";
import { isNotFound } from "../kube/api-errors.ts";
import type { Cache } from "../kube/cache.ts";
import { patchAs } from "../kube/meta.ts";

/** Whether the run may hold a credential minted through the Connection that is not revoked. */
export function holdsCredentialThrough(run: LangGraphRun, connection: string): boolean {
  return (
    Boolean(run.status?.startedAt) &&
    !run.status?.credential?.revokedAt &&
    run.spec.access.some((access) => access.connection === connection)
  );
}

export class ConnectionProtection {
  readonly #custom: CustomObjectsApi;
  readonly #connections: Cache<Connection>;
  readonly #runs: Cache<LangGraphRun>;

  constructor(kc: KubeConfig, connections: Cache<Connection>, runs: Cache<LangGraphRun>) {
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#connections = connections;
    this.#runs = runs;
  }

  /** Adds the finalizer while a run needs the Connection, removes it once none does. */
  async reconcile(key: string): Promise<void> {
    const [namespace = "", name = ""] = key.split("/");
    const connection = this.#connections.get(namespace, name);
    if (!connection) return;
    const finalizers = connection.metadata?.finalizers ?? [];
    const index = finalizers.indexOf(connectionFinalizer);
    const needed = this.#runs.list(namespace).some((run) => holdsCredentialThrough(run, name));
    if (needed === index >= 0) return;
    // A deleting object takes no new finalizers; its runs are revoked through it meanwhile.
    if (needed && connection.metadata?.deletionTimestamp) return;
    const body = needed
      ? finalizers.length === 0
        ? [{ op: "add", path: "/metadata/finalizers", value: [connectionFinalizer] }]
        : [
            {
              op: "test",
              path: "/metadata/resourceVersion",
              value: connection.metadata?.resourceVersion,
            },
            { op: "add", path: "/metadata/finalizers/-", value: connectionFinalizer },
          ]
      : [
          { op: "test", path: `/metadata/finalizers/${index}`, value: connectionFinalizer },
          { op: "remove", path: `/metadata/finalizers/${index}` },
        ];
    try {
      await this.#custom.patchNamespacedCustomObject(
        { group, version, namespace, plural: resources.connections, name, body },
        patchAs.json,
      );
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
}
