// What the operator's Job builder and the sidecar agree on, written once: the environment the
// builder sets and the sidecar reads, the ports and paths in the pod, and the audience of the
// pod token only the sidecar holds.

/** The sidecar's environment variables, by what they carry. */
export const sidecarEnv = {
  run: "LGJIT_RUN",
  runUid: "LGJIT_RUN_UID",
  namespace: "LGJIT_NAMESPACE",
  podName: "LGJIT_POD_NAME",
  podUid: "LGJIT_POD_UID",
  operatorUrl: "LGJIT_OPERATOR_URL",
  operatorCa: "LGJIT_OPERATOR_CA",
  operatorCaFile: "LGJIT_OPERATOR_CA_FILE",
  tokenFile: "LGJIT_TOKEN_FILE",
  stateDir: "LGJIT_STATE_DIR",
  trustDir: "LGJIT_TRUST_DIR",
  /** JSON: connection name to loopback port. */
  listeners: "LGJIT_LISTENERS",
  proxyPort: "LGJIT_PROXY_PORT",
  adminHost: "LGJIT_ADMIN_HOST",
  adminPort: "LGJIT_ADMIN_PORT",
  logLevel: "LGJIT_LOG_LEVEL",
} as const;

/** The sidecar's ports: the forward proxy, the admin server (/ready, /metrics), the first listener. */
export const sidecarPorts = { proxy: 15000, admin: 15020, firstListener: 15432 } as const;

/** The audience of the projected token the sidecar proves its pod with. */
export const tokenAudience = "langgraph-jit";
/** Where the sidecar's projected token is mounted (the file is `token`). */
export const tokenDirectory = "/var/run/secrets/langgraph-jit";
/** The sidecar's emptyDir: the credential it holds across restarts and the event buffer. */
export const stateDirectory = "/var/lib/langgraph-jit";
/** The pod CA's trust files: written by the sidecar, read-only to the graph's containers. */
export const trustDirectory = "/var/run/langgraph-jit/trust";
