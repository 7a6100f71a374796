// The names a run's pod is built with: the sidecar's container, its token and state volumes,
// its ports, and the ServiceAccount runs get by default. Reserved: no template may use them.
// What the sidecar itself reads (environment, ports, paths) is in api/sidecar-contract.ts.
export {
  sidecarPorts as ports,
  stateDirectory,
  tokenAudience,
  tokenDirectory,
  trustDirectory,
} from "../../../api/sidecar-contract.ts";
export const sidecarContainerName = "langgraph-jit-sidecar";
/** The init container that, in capture mode, lets only the sidecar's UID send off loopback. */
export const captureContainerName = "langgraph-jit-capture";
export const tokenExpirationSeconds = 600;
export const tokenVolume = "langgraph-jit-token";
export const stateVolume = "langgraph-jit-state";
/** The pod CA's trust files, shared read-only with the graph's containers. */
export const trustVolume = "langgraph-jit-trust";
export const reservedContainerNames: ReadonlySet<string> = new Set([
  sidecarContainerName,
  captureContainerName,
]);
export const reservedVolumeNames: ReadonlySet<string> = new Set([
  tokenVolume,
  stateVolume,
  trustVolume,
]);

/** Label prefixes of the operator and of the Job controller, which a template may not set. */
export const reservedLabelPrefixes = ["langgraph-jit.dev/", "batch.kubernetes.io/"] as const;
export const reservedLabels: ReadonlySet<string> = new Set(["controller-uid", "job-name"]);
