// An AccessPolicy may grant only what its namespace may name: its own Connections and the
// ClusterConnections the platform offers it (ADR 0011). Otherwise a team could write a policy
// for a database the platform never handed to its namespace and wait for the label to appear.
// The same rule holds at every decision; this webhook says so when the policy is written.
import type { AccessPolicy, ClusterConnection } from "../../../api/v1alpha1.ts";
import type { NamespaceConnections } from "../policy/namespace-connections.ts";
import { type AdmissionRequest, type AdmissionResponse, allow, deny } from "./admission-review.ts";

export interface PolicyAdmissionDeps {
  /** The connections the namespace may name now (connectionsIn). */
  connections(namespace: string): NamespaceConnections;
  /** The platform's ClusterConnection of this name, whichever namespaces it is offered to. */
  clusterConnection(name: string): ClusterConnection | undefined;
}

/**
 * Refuses a grant naming a ClusterConnection not offered to the policy's namespace, or a name
 * both the namespace and the platform define. A name nothing defines yet is admitted: runs
 * naming it are refused as ConnectionNotFound until one exists.
 */
export function validatePolicy(
  request: AdmissionRequest<AccessPolicy>,
  deps: PolicyAdmissionDeps,
): AdmissionResponse {
  const namespace = request.namespace ?? "";
  const grants = request.object?.spec?.grants ?? [];
  const named = deps.connections(namespace);
  const usable = new Set(named.connections.map((c) => c.metadata?.name));
  for (const [index, { connection }] of grants.entries()) {
    const field = `spec.grants[${index}].connection`;
    if (named.ambiguous.has(connection)) {
      return deny(
        request,
        `${field}: "${connection}" names both a Connection in namespace "${namespace}" and a ClusterConnection offered to it: delete or rename the Connection`,
      );
    }
    const platform = usable.has(connection) ? undefined : deps.clusterConnection(connection);
    if (platform) {
      return deny(
        request,
        `${field}: ClusterConnection "${connection}" is not offered to namespace "${namespace}": its namespaceSelector ${JSON.stringify(platform.spec.namespaceSelector)} does not select the namespace's labels`,
      );
    }
  }
  return allow(request);
}
