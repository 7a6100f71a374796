// Builds a run's Job: the graph's pod template plus the sidecar as a native sidecar, the
// projected token only the sidecar sees, and loopback-only connection env for the graph.
import type {
  V1Container,
  V1EnvVar,
  V1Job,
  V1OwnerReference,
  V1PodSpec,
  V1SecurityContext,
  V1Volume,
} from "@kubernetes/client-node";
import { sidecarEnv } from "../../../api/sidecar-contract.ts";
import {
  type AnyConnection,
  annotations,
  type LangGraphRun,
  labels,
} from "../../../api/v1alpha1.ts";
import { boundedName, envName } from "./names.ts";
import {
  captureContainerName,
  ports,
  sidecarContainerName,
  stateDirectory,
  stateVolume,
  tokenAudience,
  tokenDirectory,
  tokenExpirationSeconds,
  tokenVolume,
  trustDirectory,
  trustVolume,
} from "./pod-contract.ts";

export interface SidecarSettings {
  image: string;
  imagePullPolicy: string;
  /** The sidecar's dedicated UID; no graph container may run as it. */
  uid: number;
  /** Where the sidecar reaches the operator's credential and event API. */
  operatorUrl: string;
  /** PEM of the CA(s) the operator's HTTPS certificate chains to. */
  operatorCaPem: string;
  /** In-pod capture: an init container lets only the sidecar's UID send off loopback. */
  capture: boolean;
}

/** The loopback port of each connection's listener, in the order the run lists them. */
export function listenerPorts(connections: AnyConnection[]): Map<string, number> {
  return new Map(connections.map((c, i) => [c.metadata?.name ?? "", ports.firstListener + i]));
}

/** The graph container's environment: loopback addresses only, never a credential. */
export function graphEnvironment(connections: AnyConnection[]): V1EnvVar[] {
  const env: V1EnvVar[] = [];
  const listeners = listenerPorts(connections);
  const postgresUrls: string[] = [];
  for (const connection of connections) {
    const name = connection.metadata?.name ?? "";
    const port = listeners.get(name);
    const database = connection.spec.postgres?.database;
    const url = database
      ? `postgres://run@127.0.0.1:${port}/${encodeURIComponent(database)}`
      : `http://127.0.0.1:${port}`;
    env.push({ name: `LGJIT_${envName(name)}_URL`, value: url });
    if (database) postgresUrls.push(url);
  }
  const [onlyPostgres] = postgresUrls;
  if (postgresUrls.length === 1 && onlyPostgres)
    env.push({ name: "DATABASE_URL", value: onlyPostgres });
  const proxy = `http://127.0.0.1:${ports.proxy}`;
  for (const name of ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]) {
    env.push({ name, value: proxy });
  }
  for (const name of ["NO_PROXY", "no_proxy"]) env.push({ name, value: "127.0.0.1,localhost" });
  // The sidecar intercepts HTTPS to granted hosts with its pod CA: the usual clients trust it
  // here (the bundle also holds the public roots), and Node's fetch honours HTTPS_PROXY.
  const bundle = `${trustDirectory}/ca-bundle.pem`;
  for (const name of ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"]) {
    env.push({ name, value: bundle });
  }
  env.push({ name: "NODE_EXTRA_CA_CERTS", value: `${trustDirectory}/ca.pem` });
  env.push({ name: "NODE_USE_ENV_PROXY", value: "1" });
  return env;
}

export function ownerReference(run: LangGraphRun): V1OwnerReference {
  return {
    apiVersion: run.apiVersion ?? "langgraph-jit.dev/v1alpha1",
    kind: "LangGraphRun",
    name: run.metadata?.name ?? "",
    uid: run.metadata?.uid ?? "",
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function runLabels(run: LangGraphRun): Record<string, string> {
  return { [labels.run]: boundedName(run.metadata?.name ?? "") };
}

const fieldEnv = (name: string, fieldPath: string): V1EnvVar => ({
  name,
  valueFrom: { fieldRef: { fieldPath } },
});

/** Who the sidecar works for: a run's Job names the run; a tagged pod's run is named after it. */
export function runIdentityEnv(run: LangGraphRun | undefined): V1EnvVar[] {
  if (!run) return [fieldEnv(sidecarEnv.run, "metadata.name")];
  return [
    { name: sidecarEnv.run, value: run.metadata?.name ?? "" },
    { name: sidecarEnv.runUid, value: run.metadata?.uid ?? "" },
  ];
}

function sidecarContainer(
  identity: V1EnvVar[],
  connections: AnyConnection[],
  sidecar: SidecarSettings,
): V1Container {
  return {
    name: sidecarContainerName,
    image: sidecar.image,
    imagePullPolicy: sidecar.imagePullPolicy,
    // A native sidecar: started before the graph, stopped after it, not holding the Job open.
    restartPolicy: "Always",
    env: [
      ...identity,
      { name: sidecarEnv.operatorUrl, value: sidecar.operatorUrl },
      { name: sidecarEnv.operatorCa, value: sidecar.operatorCaPem },
      { name: sidecarEnv.tokenFile, value: `${tokenDirectory}/token` },
      { name: sidecarEnv.stateDir, value: stateDirectory },
      { name: sidecarEnv.trustDir, value: trustDirectory },
      {
        name: sidecarEnv.listeners,
        value: JSON.stringify(Object.fromEntries(listenerPorts(connections))),
      },
      { name: sidecarEnv.proxyPort, value: String(ports.proxy) },
      { name: sidecarEnv.adminHost, value: "0.0.0.0" },
      { name: sidecarEnv.adminPort, value: String(ports.admin) },
      fieldEnv(sidecarEnv.namespace, "metadata.namespace"),
      fieldEnv(sidecarEnv.podName, "metadata.name"),
      fieldEnv(sidecarEnv.podUid, "metadata.uid"),
    ],
    ports: [
      { name: "lgjit-admin", containerPort: ports.admin },
      { name: "lgjit-proxy", containerPort: ports.proxy },
    ],
    // The graph starts only once the sidecar holds a credential. The kubelet probes the pod's
    // IP from the node, so the admin server listens on every address of the pod.
    startupProbe: {
      httpGet: { path: "/ready", port: ports.admin },
      periodSeconds: 1,
      failureThreshold: 120,
    },
    readinessProbe: {
      httpGet: { path: "/ready", port: ports.admin },
      periodSeconds: 5,
    },
    securityContext: {
      runAsUser: sidecar.uid,
      runAsGroup: sidecar.uid,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    },
    resources: {
      requests: { cpu: "20m", memory: "64Mi" },
      limits: { memory: "256Mi" },
    },
    volumeMounts: [
      { name: tokenVolume, mountPath: tokenDirectory, readOnly: true },
      { name: stateVolume, mountPath: stateDirectory },
      { name: trustVolume, mountPath: trustDirectory },
    ],
  };
}

/**
 * In capture mode, runs first: leaves the pod able to send off loopback only as the sidecar's
 * UID (and to its DNS server), in the way istio-init does (sidecar/bin/capture).
 */
function captureContainer(sidecar: SidecarSettings): V1Container {
  return {
    name: captureContainerName,
    image: sidecar.image,
    imagePullPolicy: sidecar.imagePullPolicy,
    command: ["/app/sidecar/bin/capture"],
    env: [{ name: "LGJIT_SIDECAR_UID", value: String(sidecar.uid) }],
    securityContext: {
      runAsUser: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"], add: ["NET_ADMIN", "NET_RAW"] },
      seccompProfile: { type: "RuntimeDefault" },
    },
    resources: { requests: { cpu: "10m", memory: "16Mi" }, limits: { memory: "64Mi" } },
  };
}

/** Under capture the exemption is by UID: a graph process may neither change its UID nor send raw frames. */
const capturedCapabilities = ["NET_RAW", "SETUID", "SETGID"];

function graphContainer(container: V1Container, env: V1EnvVar[], capture: boolean): V1Container {
  const ours = new Set(env.map((e) => e.name));
  const withEnv = {
    ...container,
    env: [...(container.env ?? []).filter((e) => !ours.has(e.name)), ...env],
    volumeMounts: [
      ...(container.volumeMounts ?? []),
      { name: trustVolume, mountPath: trustDirectory, readOnly: true },
    ],
  };
  if (!capture) return withEnv;
  const context: V1SecurityContext = container.securityContext ?? {};
  const drop = [...new Set([...(context.capabilities?.drop ?? []), ...capturedCapabilities])];
  return {
    ...withEnv,
    securityContext: {
      ...context,
      allowPrivilegeEscalation: false,
      capabilities: { ...context.capabilities, drop },
    },
  };
}

/**
 * The pod spec with the sidecar in it, as a run's Job and a tagged pod both get it: the native
 * sidecar (after the capture container in capture mode), the graph containers' loopback
 * environment and trust files, and the token, state and trust volumes.
 */
export function withSidecar(
  spec: V1PodSpec,
  identity: V1EnvVar[],
  connections: AnyConnection[],
  sidecar: SidecarSettings,
): V1PodSpec {
  const env = graphEnvironment(connections);
  const graph = (c: V1Container) => graphContainer(c, env, sidecar.capture);
  const injected = injectedParts(identity, connections, sidecar);
  return {
    ...spec,
    initContainers: [...injected.initContainers, ...(spec.initContainers ?? []).map(graph)],
    containers: spec.containers.map(graph),
    volumes: [...(spec.volumes ?? []), ...injected.volumes],
  };
}

/** What withSidecar adds of its own: the first init containers and the last volumes. */
export function injectedParts(
  identity: V1EnvVar[],
  connections: AnyConnection[],
  sidecar: SidecarSettings,
): { initContainers: V1Container[]; volumes: V1Volume[] } {
  return {
    initContainers: [
      ...(sidecar.capture ? [captureContainer(sidecar)] : []),
      sidecarContainer(identity, connections, sidecar),
    ],
    volumes: [
      {
        name: tokenVolume,
        projected: {
          sources: [
            {
              serviceAccountToken: {
                audience: tokenAudience,
                expirationSeconds: tokenExpirationSeconds,
                path: "token",
              },
            },
          ],
        },
      },
      { name: stateVolume, emptyDir: { sizeLimit: "256Mi" } },
      { name: trustVolume, emptyDir: { medium: "Memory", sizeLimit: "1Mi" } },
    ],
  };
}

export interface JobInput {
  run: LangGraphRun;
  /** The run's connections, in the order of spec.access. */
  connections: AnyConnection[];
  sidecar: SidecarSettings;
  jobName: string;
  /** The ServiceAccount the pod runs as, as the run's AccessPolicies name it. */
  serviceAccount: string;
  /** The operator's seal on the Job, which no one else can make (status-seal.ts). */
  seal: string;
  activeDeadlineSeconds: number;
}

export function buildJob({
  run,
  connections,
  sidecar,
  jobName,
  serviceAccount,
  seal,
  activeDeadlineSeconds,
}: JobInput): V1Job {
  const template = run.spec.template;
  const spec = template?.spec;
  if (!spec) throw new Error("spec.template.spec is missing");
  const [firstGraph] = spec.containers;
  const podLabels = { ...template?.metadata?.labels, ...runLabels(run) };
  const { serviceAccount: _deprecatedAlias, ...podSpec } = spec;
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: jobName,
      namespace: run.metadata?.namespace,
      labels: runLabels(run),
      annotations: { [annotations.seal]: seal },
      ownerReferences: [ownerReference(run)],
    },
    spec: {
      // A run is one attempt: its credential and deadline belong to that attempt.
      backoffLimit: 0,
      activeDeadlineSeconds,
      template: {
        metadata: {
          labels: podLabels,
          annotations: {
            ...template?.metadata?.annotations,
            "kubectl.kubernetes.io/default-container": firstGraph?.name ?? "",
          },
        },
        spec: withSidecar(
          {
            ...podSpec,
            restartPolicy: "Never",
            serviceAccountName: serviceAccount,
            // Only the sidecar holds a token, projected for the langgraph-jit audience.
            automountServiceAccountToken: false,
          },
          runIdentityEnv(run),
          connections,
          sidecar,
        ),
      },
    },
  };
}
