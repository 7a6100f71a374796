// What a run's pod template may ask for. The operator creates the pod with its own rights, so
// the template may not reach past the run's boundary: it meets the baseline Pod Security
// Standard whatever the namespace says, holds no Kubernetes API credential, sets nothing
// pod-wide that changes where the sidecar's connections go, mounts nothing the node fetches
// from outside the pod, and touches nothing of the sidecar's. The objects it references are
// checked as the requester in template-review.ts.
import type {
  V1Container,
  V1LifecycleHandler,
  V1PodSecurityContext,
  V1PodSpec,
  V1PodTemplateSpec,
  V1Probe,
  V1SecurityContext,
  V1Volume,
} from "@kubernetes/client-node";
import { labels } from "../../../api/v1alpha1.ts";
import {
  reservedContainerNames,
  reservedLabelPrefixes,
  reservedLabels,
  reservedVolumeNames,
  tokenAudience,
} from "./pod-contract.ts";

/** A pod template the operator will not run; the message names the field, from the template. */
export class TemplateRefused extends Error {
  override name = "TemplateRefused";
}

export interface PodRuleOptions {
  /** The sidecar's UID, which no other container may run as. */
  sidecarUid: number;
  /** In-pod capture exempts the sidecar's UID: no graph container may be able to take it. */
  capture: boolean;
  /**
   * A tagged workload's pod rather than a run's: it is labelled for injection (and, from a
   * Job, by the Job controller), and may keep its ServiceAccount's token, whose reach the pod
   * webhook checks instead.
   */
  tagged?: boolean;
}

/** Capabilities the baseline Pod Security Standard lets a container add. */
const baselineCapabilities = new Set([
  "AUDIT_WRITE",
  "CHOWN",
  "DAC_OVERRIDE",
  "FOWNER",
  "FSETID",
  "KILL",
  "MKNOD",
  "NET_BIND_SERVICE",
  "SETFCAP",
  "SETGID",
  "SETPCAP",
  "SETUID",
  "SYS_CHROOT",
]);
/** With capture on, these would let a graph process become the sidecar's UID. */
const uidChangingCapabilities = new Set(["SETUID", "SETGID"]);
/** The baseline standard's safe sysctls (Kubernetes 1.34). */
const safeSysctls = new Set([
  "kernel.shm_rmid_forced",
  "net.ipv4.ip_local_port_range",
  "net.ipv4.ip_unprivileged_port_start",
  "net.ipv4.tcp_syncookies",
  "net.ipv4.ping_group_range",
  "net.ipv4.ip_local_reserved_ports",
  "net.ipv4.tcp_keepalive_time",
  "net.ipv4.tcp_fin_timeout",
  "net.ipv4.tcp_keepalive_intvl",
  "net.ipv4.tcp_keepalive_probes",
]);
const baselineSeLinuxTypes = new Set([
  "",
  "container_t",
  "container_init_t",
  "container_kvm_t",
  "container_engine_t",
]);
/** Volumes whose content comes from the pod or from API objects checked as the requester. */
const allowedVolumeSources = [
  "configMap",
  "downwardAPI",
  "emptyDir",
  "ephemeral",
  "persistentVolumeClaim",
  "projected",
  "secret",
];
const allowedProjectedSources = ["clusterTrustBundle", "configMap", "downwardAPI", "secret"];
const appArmorAnnotationPrefix = "container.apparmor.security.beta.kubernetes.io/";

function refuse(path: string, why: string): never {
  throw new TemplateRefused(`${path}: ${why}`);
}

/** Throws TemplateRefused, naming the first field (from the template's root) that is not allowed. */
export function checkPodTemplate(template: V1PodTemplateSpec, options: PodRuleOptions): void {
  checkTemplateMetadata(template, options.tagged === true);
  const spec = template.spec;
  if (!spec) refuse("spec", "the pod template has no spec");
  checkPodWide(spec, options);
  for (const [index, volume] of (spec.volumes ?? []).entries()) {
    checkVolume(volume, `spec.volumes[${index}]`, options.tagged === true);
  }
  const containers: [V1Container, string][] = [
    ...(spec.initContainers ?? []).map((c, i): [V1Container, string] => [
      c,
      `spec.initContainers[${i}]`,
    ]),
    ...spec.containers.map((c, i): [V1Container, string] => [c, `spec.containers[${i}]`]),
  ];
  for (const [container, path] of containers) {
    checkContainer(container, spec.securityContext, path, options);
  }
}

function checkTemplateMetadata(template: V1PodTemplateSpec, tagged: boolean): void {
  for (const label of Object.keys(template.metadata?.labels ?? {})) {
    if (tagged && (label === labels.inject || !label.startsWith("langgraph-jit.dev/"))) continue;
    if (reservedLabels.has(label) || reservedLabelPrefixes.some((p) => label.startsWith(p))) {
      refuse(
        `metadata.labels[${label}]`,
        "is reserved for langgraph-jit and the Job controller, which set it themselves",
      );
    }
  }
  for (const [key, value] of Object.entries(template.metadata?.annotations ?? {})) {
    if (!key.startsWith(appArmorAnnotationPrefix)) continue;
    if (value !== "runtime/default" && !value.startsWith("localhost/")) {
      refuse(
        `metadata.annotations[${key}]`,
        `AppArmor profile "${value}" is not allowed (baseline: runtime/default or localhost/*)`,
      );
    }
  }
}

function checkPodWide(spec: V1PodSpec, options: PodRuleOptions): void {
  for (const field of ["hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"] as const) {
    if (spec[field]) refuse(`spec.${field}`, "would let the graph reach around its sidecar");
  }
  if ((spec.ephemeralContainers ?? []).length > 0) {
    refuse("spec.ephemeralContainers", "a run's pod has no ephemeral containers");
  }
  // These apply to the sidecar too: they would send its connections, credential and all, to
  // an address of the graph's choosing.
  if ((spec.hostAliases ?? []).length > 0) {
    refuse("spec.hostAliases", "would change where the sidecar's connections go");
  }
  if (spec.dnsPolicy !== undefined && spec.dnsPolicy !== "ClusterFirst") {
    refuse(
      "spec.dnsPolicy",
      `"${spec.dnsPolicy}" would change where the sidecar's connections go (only ClusterFirst)`,
    );
  }
  if (spec.dnsConfig) refuse("spec.dnsConfig", "would change where the sidecar's connections go");
  for (const field of ["hostname", "subdomain", "setHostnameAsFQDN"] as const) {
    if (spec[field]) {
      refuse(`spec.${field}`, "would add names for the pod's own address to its hosts file");
    }
  }
  if (spec.automountServiceAccountToken === true && !options.tagged) {
    refuse(
      "spec.automountServiceAccountToken",
      "a run's pod holds no Kubernetes API credential; only the sidecar gets a token, bound to langgraph-jit",
    );
  }
  if ((spec.resourceClaims ?? []).length > 0) {
    refuse("spec.resourceClaims", "a run's pod claims no devices");
  }
  checkPodSecurityContext(spec.securityContext, options);
}

function checkPodSecurityContext(
  context: V1PodSecurityContext | undefined,
  options: PodRuleOptions,
): void {
  if (!context) return;
  const path = "spec.securityContext";
  checkSharedSecurityFields(context, path);
  if (context.runAsUser === options.sidecarUid) {
    refuse(
      `${path}.runAsUser`,
      `UID ${options.sidecarUid} is reserved for the langgraph-jit sidecar`,
    );
  }
  for (const [index, sysctl] of (context.sysctls ?? []).entries()) {
    if (!safeSysctls.has(sysctl.name)) {
      refuse(
        `${path}.sysctls[${index}]`,
        `sysctl "${sysctl.name}" is not one of baseline's safe sysctls`,
      );
    }
  }
}

/** Fields a pod and a container security context share, as the baseline standard restricts them. */
function checkSharedSecurityFields(
  context: V1PodSecurityContext | V1SecurityContext,
  path: string,
): void {
  if (context.windowsOptions?.hostProcess) {
    refuse(`${path}.windowsOptions.hostProcess`, "host processes are not allowed");
  }
  if (context.seccompProfile?.type === "Unconfined") {
    refuse(`${path}.seccompProfile.type`, "Unconfined is not allowed (baseline)");
  }
  if (context.appArmorProfile?.type === "Unconfined") {
    refuse(`${path}.appArmorProfile.type`, "Unconfined is not allowed (baseline)");
  }
  const selinux = context.seLinuxOptions;
  if (selinux?.user || selinux?.role) {
    refuse(`${path}.seLinuxOptions`, "setting the SELinux user or role is not allowed (baseline)");
  }
  if (selinux?.type !== undefined && !baselineSeLinuxTypes.has(selinux.type)) {
    refuse(`${path}.seLinuxOptions.type`, `"${selinux.type}" is not allowed (baseline)`);
  }
}

function checkContainer(
  container: V1Container,
  pod: V1PodSecurityContext | undefined,
  path: string,
  options: PodRuleOptions,
): void {
  if (reservedContainerNames.has(container.name)) {
    refuse(`${path}.name`, `"${container.name}" is reserved for langgraph-jit`);
  }
  const context: V1SecurityContext = container.securityContext ?? {};
  const at = `${path}.securityContext`;
  checkSharedSecurityFields(context, at);
  if (context.privileged)
    refuse(`${at}.privileged`, "would let the graph reach around its sidecar");
  if (context.procMount !== undefined && context.procMount !== "Default") {
    refuse(`${at}.procMount`, `"${context.procMount}" is not allowed (baseline: Default)`);
  }
  if ((context.runAsUser ?? pod?.runAsUser) === options.sidecarUid) {
    refuse(
      context.runAsUser === undefined ? "spec.securityContext.runAsUser" : `${at}.runAsUser`,
      `UID ${options.sidecarUid} is reserved for the langgraph-jit sidecar`,
    );
  }
  for (const [index, raw] of (context.capabilities?.add ?? []).entries()) {
    const capability = raw.toUpperCase().replace(/^CAP_/, "");
    if (!baselineCapabilities.has(capability)) {
      refuse(
        `${at}.capabilities.add[${index}]`,
        `${capability} is beyond baseline's capabilities and could reach around the sidecar`,
      );
    }
    if (options.capture && uidChangingCapabilities.has(capability)) {
      refuse(
        `${at}.capabilities.add[${index}]`,
        `${capability} would let the graph take the sidecar's UID, which in-pod capture exempts`,
      );
    }
  }
  if (options.capture && context.allowPrivilegeEscalation === true) {
    refuse(
      `${at}.allowPrivilegeEscalation`,
      "would let the graph take the sidecar's UID, which in-pod capture exempts",
    );
  }
  for (const [index, port] of (container.ports ?? []).entries()) {
    if (port.hostPort) refuse(`${path}.ports[${index}].hostPort`, "host ports are not allowed");
  }
  for (const [index, mount] of (container.volumeMounts ?? []).entries()) {
    if (reservedVolumeNames.has(mount.name)) {
      refuse(`${path}.volumeMounts[${index}]`, `volume "${mount.name}" is the sidecar's`);
    }
  }
  // The kubelet runs these from the node: a host of the graph's choosing is a way out.
  for (const probe of ["livenessProbe", "readinessProbe", "startupProbe"] as const) {
    checkHandler(container[probe], `${path}.${probe}`);
  }
  checkHandler(container.lifecycle?.postStart, `${path}.lifecycle.postStart`);
  checkHandler(container.lifecycle?.preStop, `${path}.lifecycle.preStop`);
}

function checkHandler(handler: V1Probe | V1LifecycleHandler | undefined, path: string): void {
  if (handler?.httpGet?.host) {
    refuse(
      `${path}.httpGet.host`,
      "the kubelet would connect from the node to a host of the template's choosing",
    );
  }
  if (handler?.tcpSocket?.host) {
    refuse(
      `${path}.tcpSocket.host`,
      "the kubelet would connect from the node to a host of the template's choosing",
    );
  }
}

function checkVolume(volume: V1Volume, path: string, tagged: boolean): void {
  if (reservedVolumeNames.has(volume.name)) {
    refuse(`${path}.name`, `"${volume.name}" is reserved for langgraph-jit`);
  }
  const sources = Object.entries(volume)
    .filter(([key, value]) => key !== "name" && value != null)
    .map(([key]) => key);
  const [source] = sources;
  if (sources.length !== 1 || source === undefined) {
    refuse(path, `a volume has exactly one source, not ${sources.length}`);
  }
  if (!allowedVolumeSources.includes(source)) {
    const what = source === "csi" ? "inline CSI" : source;
    refuse(
      `${path}.${source}`,
      `${what} volumes are not allowed in a run's pod: the node mounts them from outside it (allowed: ${allowedVolumeSources.join(", ")})`,
    );
  }
  for (const [index, projection] of (volume.projected?.sources ?? []).entries()) {
    const at = `${path}.projected.sources[${index}]`;
    const kinds = Object.entries(projection)
      .filter(([, value]) => value != null)
      .map(([key]) => key);
    // A tagged pod may keep its own API token (kube-api-access), never one for our audience.
    const audience = projection.serviceAccountToken?.audience;
    if (projection.serviceAccountToken && (!tagged || audience === tokenAudience)) {
      refuse(
        `${at}.serviceAccountToken`,
        audience === tokenAudience
          ? `a token for audience "${tokenAudience}" is the sidecar's alone`
          : "a run's pod holds no Kubernetes API credential; only the sidecar gets a token, bound to langgraph-jit",
      );
    }
    const other = kinds.find(
      (kind) =>
        !allowedProjectedSources.includes(kind) && !(tagged && kind === "serviceAccountToken"),
    );
    if (other) {
      refuse(
        `${at}.${other}`,
        `projecting ${other} is not allowed (allowed: ${allowedProjectedSources.join(", ")})`,
      );
    }
  }
}
