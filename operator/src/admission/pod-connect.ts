// CONNECT to a pod that carries our sidecar (a run's, or a tagged one): an exec or attach into
// the sidecar would read its memory and credential, and a port-forward reaches its loopback
// listeners, which act with the run's access. Both are refused to everyone; exec into the
// graph's own containers stays with RBAC.
import type { V1Pod } from "@kubernetes/client-node";
import { labels } from "../../../api/v1alpha1.ts";
import { sidecarContainerName } from "../runs/pod-contract.ts";
import { type AdmissionRequest, type AdmissionResponse, allow, deny } from "./admission-review.ts";

/** The options object of a CONNECT to pods/exec, pods/attach or pods/portforward. */
export interface PodConnectOptions {
  kind?: string;
  container?: string;
  ports?: number[];
}

export interface PodConnectDeps {
  /** The pod as the API server has it now; undefined when there is none. */
  pod(namespace: string, name: string): Promise<V1Pod | undefined>;
}

const carriesSidecar = (pod: V1Pod) =>
  [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].some(
    (container) => container.name === sidecarContainerName,
  );

export async function validatePodConnect(
  request: AdmissionRequest<PodConnectOptions>,
  deps: PodConnectDeps,
): Promise<AdmissionResponse> {
  const { namespace = "", name = "", subResource } = request;
  const asked = `pods/${subResource} to ${namespace}/${name}`;
  let pod: V1Pod | undefined;
  try {
    pod = await deps.pod(namespace, name);
  } catch {
    return deny(request, `${asked}: langgraph-jit cannot read the pod now; try again`, 503);
  }
  if (!pod || !carriesSidecar(pod)) return allow(request);
  const run = pod.metadata?.labels?.[labels.run] ?? pod.metadata?.name;
  if (subResource === "portforward") {
    return deny(
      request,
      `${asked}: the pod's langgraph-jit sidecar listens there with run ${run}'s access, so no port of it may be forwarded`,
    );
  }
  if (request.object?.container === sidecarContainerName) {
    return deny(
      request,
      `${asked}: container ${sidecarContainerName} holds run ${run}'s credential; exec and attach reach only the graph's containers`,
    );
  }
  return allow(request);
}
