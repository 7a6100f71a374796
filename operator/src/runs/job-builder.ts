// Builds a run's Job: the graph's pod template plus the sidecar as a native sidecar, the
// projected token only the sidecar sees, and loopback-only connection env for the graph.
import type {
  V1Container,
  V1EnvVar,
  V1Job,
  V1OwnerReference,
  V1PodSpec,
  V1SecurityContext,
} from "@kubernetes/client-node";
import { type Connection, type LangGraphRun, labels } from "../../../api/v1alpha1.ts";
import { boundedName, envName } from "./names.ts";

export interface SidecarSettings {
  image: string;
  imagePullPolicy: string;
  /** The sidecar's dedicated UID; no graph container may run as it. */
  uid: number;
  /** Where the sidecar reaches the operator's credential and event API. */
  operatorUrl: string;
  /** PEM of the CA(s) the operator's HTTPS certificate chains to. */
  operatorCaPem: string;
}

export const sidecarContainerName = "langgraph-jit-sidecar";
export const tokenAudience = "langgraph-jit";
export const tokenExpirationSeconds = 600;
export const tokenDirectory = "/var/run/secrets/langgraph-jit";
export const stateDirectory = "/var/lib/langgraph-jit";
export const ports = { proxy: 15000, admin: 15020, firstListener: 15432 } as const;
const tokenVolume = "langgraph-jit-token";
const stateVolume = "langgraph-jit-state";
const reservedNames = new Set([sidecarContainerName, tokenVolume, stateVolume]);

/** A pod template the operator will not run, with the reason to show the requester. */
export class TemplateRefused extends Error {
  override name = "TemplateRefused";
}

/** The loopback port of each connection's listener, in the order the run lists them. */
export function listenerPorts(connections: Connection[]): Map<string, number> {
  return new Map(connections.map((c, i) => [c.metadata?.name ?? "", ports.firstListener + i]));
}

/** The graph container's environment: loopback addresses only, never a credential. */
export function graphEnvironment(connections: Connection[]): V1EnvVar[] {
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
  return env;
}

/** Capabilities that would let a graph container bypass the sidecar or read its memory. */
const dangerousCapabilities = new Set(["NET_ADMIN", "SYS_PTRACE", "SYS_ADMIN", "ALL"]);

/**
 * Refuses pod specs whose graph containers could impersonate the sidecar, read its token or
 * memory, or rewrite the pod's network.
 */
export function checkTemplate(spec: V1PodSpec, sidecarUid: number): void {
  const podUid = spec.securityContext?.runAsUser;
  for (const field of ["hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"] as const) {
    if (spec[field]) {
      throw new TemplateRefused(`the pod sets ${field}, which could bypass the sidecar`);
    }
  }
  if ((spec.ephemeralContainers ?? []).length > 0) {
    throw new TemplateRefused("the pod template has ephemeral containers");
  }
  for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
    if (reservedNames.has(container.name)) {
      throw new TemplateRefused(`container name "${container.name}" is reserved for langgraph-jit`);
    }
    const context: V1SecurityContext = container.securityContext ?? {};
    if ((context.runAsUser ?? podUid) === sidecarUid) {
      throw new TemplateRefused(
        `container "${container.name}" runs as UID ${sidecarUid}, which is reserved for the langgraph-jit sidecar`,
      );
    }
    const added = (context.capabilities?.add ?? []).map((cap) =>
      cap.toUpperCase().replace(/^CAP_/, ""),
    );
    const dangerous = added.find((cap) => dangerousCapabilities.has(cap));
    if (dangerous) {
      throw new TemplateRefused(
        `container "${container.name}" adds the ${dangerous} capability, which could bypass the sidecar`,
      );
    }
    if (context.privileged) {
      throw new TemplateRefused(
        `container "${container.name}" is privileged, which could bypass the sidecar`,
      );
    }
    const mount = container.volumeMounts?.find((m) => reservedNames.has(m.name));
    if (mount) {
      throw new TemplateRefused(
        `container "${container.name}" mounts volume "${mount.name}", which only the sidecar may`,
      );
    }
  }
  for (const volume of spec.volumes ?? []) {
    if (reservedNames.has(volume.name)) {
      throw new TemplateRefused(`volume name "${volume.name}" is reserved for langgraph-jit`);
    }
    const token = volume.projected?.sources?.find(
      (source) => source.serviceAccountToken?.audience === tokenAudience,
    );
    if (token) {
      throw new TemplateRefused(
        `volume "${volume.name}" projects a token for audience "${tokenAudience}", which only the sidecar may hold`,
      );
    }
  }
}

/**
 * Checks a pod the credential API is asked to serve: its sidecar is the operator's, unaltered,
 * and nothing else in it could read the sidecar's token (a pod made by hand that claims a run's
 * Job as its owner fails here).
 */
export function checkRunPod(spec: V1PodSpec | undefined, sidecar: { image: string; uid: number }) {
  const ours = spec?.initContainers?.find((c) => c.name === sidecarContainerName);
  if (!spec || !ours) throw new TemplateRefused("the pod has no langgraph-jit sidecar");
  if (ours.image !== sidecar.image || ours.command || ours.args) {
    throw new TemplateRefused("the pod's langgraph-jit sidecar is not the operator's");
  }
  const token = spec.volumes?.find((v) => v.name === tokenVolume);
  if (token?.projected?.sources?.[0]?.serviceAccountToken?.audience !== tokenAudience) {
    throw new TemplateRefused("the pod's token volume is not the operator's");
  }
  if (
    (spec.ephemeralContainers ?? []).some((c) =>
      c.volumeMounts?.some((m) => reservedNames.has(m.name)),
    )
  ) {
    throw new TemplateRefused("an ephemeral container mounts the sidecar's volumes");
  }
  checkTemplate(
    {
      ...spec,
      ephemeralContainers: [],
      initContainers: spec.initContainers?.filter((c) => c !== ours),
      volumes: spec.volumes?.filter((v) => !reservedNames.has(v.name)),
    },
    sidecar.uid,
  );
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

function sidecarContainer(
  run: LangGraphRun,
  connections: Connection[],
  sidecar: SidecarSettings,
): V1Container {
  const fieldEnv = (name: string, fieldPath: string): V1EnvVar => ({
    name,
    valueFrom: { fieldRef: { fieldPath } },
  });
  return {
    name: sidecarContainerName,
    image: sidecar.image,
    imagePullPolicy: sidecar.imagePullPolicy,
    // A native sidecar: started before the graph, stopped after it, not holding the Job open.
    restartPolicy: "Always",
    env: [
      { name: "LGJIT_RUN", value: run.metadata?.name ?? "" },
      { name: "LGJIT_RUN_UID", value: run.metadata?.uid ?? "" },
      { name: "LGJIT_OPERATOR_URL", value: sidecar.operatorUrl },
      { name: "LGJIT_OPERATOR_CA", value: sidecar.operatorCaPem },
      { name: "LGJIT_TOKEN_FILE", value: `${tokenDirectory}/token` },
      { name: "LGJIT_STATE_DIR", value: stateDirectory },
      {
        name: "LGJIT_LISTENERS",
        value: JSON.stringify(Object.fromEntries(listenerPorts(connections))),
      },
      { name: "LGJIT_PROXY_PORT", value: String(ports.proxy) },
      { name: "LGJIT_ADMIN_HOST", value: "0.0.0.0" },
      { name: "LGJIT_ADMIN_PORT", value: String(ports.admin) },
      fieldEnv("LGJIT_NAMESPACE", "metadata.namespace"),
      fieldEnv("LGJIT_POD_NAME", "metadata.name"),
      fieldEnv("LGJIT_POD_UID", "metadata.uid"),
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
    ],
  };
}

function withGraphEnv(container: V1Container, env: V1EnvVar[]): V1Container {
  const ours = new Set(env.map((e) => e.name));
  return { ...container, env: [...(container.env ?? []).filter((e) => !ours.has(e.name)), ...env] };
}

export interface JobInput {
  run: LangGraphRun;
  /** The run's connections, in the order of spec.access. */
  connections: Connection[];
  sidecar: SidecarSettings;
  jobName: string;
  activeDeadlineSeconds: number;
}

export function buildJob({
  run,
  connections,
  sidecar,
  jobName,
  activeDeadlineSeconds,
}: JobInput): V1Job {
  const template = run.spec.template;
  const spec = template.spec;
  if (!spec) throw new TemplateRefused("spec.template.spec is missing");
  checkTemplate(spec, sidecar.uid);
  const env = graphEnvironment(connections);
  const [firstGraph] = spec.containers;
  const podLabels = { ...template.metadata?.labels, ...runLabels(run) };
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: jobName,
      namespace: run.metadata?.namespace,
      labels: runLabels(run),
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
            ...template.metadata?.annotations,
            "kubectl.kubernetes.io/default-container": firstGraph?.name ?? "",
          },
        },
        spec: {
          ...spec,
          restartPolicy: "Never",
          // The graph needs no Kubernetes API token; the sidecar gets its own, audience-bound.
          automountServiceAccountToken: spec.automountServiceAccountToken ?? false,
          initContainers: [
            sidecarContainer(run, connections, sidecar),
            ...(spec.initContainers ?? []).map((c) => withGraphEnv(c, env)),
          ],
          containers: spec.containers.map((c) => withGraphEnv(c, env)),
          volumes: [
            ...(spec.volumes ?? []),
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
          ],
        },
      },
    },
  };
}
