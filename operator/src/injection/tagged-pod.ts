// A tagged pod as the operator reads it: how long one credential of it may live, and whether it
// is still the pod the webhook injected.
import type { V1Container, V1Pod, V1PodSpec } from "@kubernetes/client-node";
import { parseDuration } from "../../../api/duration.ts";
import { sidecarEnv } from "../../../api/sidecar-contract.ts";
import { annotations, type Connection } from "../../../api/v1alpha1.ts";
import { injectedParts, runIdentityEnv, type SidecarSettings } from "../runs/job-builder.ts";
import { trustVolume } from "../runs/pod-contract.ts";
import { checkPodTemplate, type PodRuleOptions, TemplateRefused } from "../runs/pod-rules.ts";

const longestMs = 168 * 60 * 60 * 1000;

/** The pod's max-duration annotation in ms, undefined when absent; throws naming what is wrong. */
export function maxDurationOf(pod: V1Pod): number | undefined {
  const text = pod.metadata?.annotations?.[annotations.maxDuration];
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms <= 0 || ms > longestMs) {
    throw new Error(`"${text}" must be a positive duration of at most 168h, such as 30m or 1h`);
  }
  return ms;
}

/**
 * Fields the API server fills in on a created pod, whatever the value: none of them changes
 * what the sidecar runs, reads or trusts.
 */
const defaulted: ReadonlySet<string> = new Set([
  "terminationMessagePath",
  "terminationMessagePolicy",
  "timeoutSeconds",
  "successThreshold",
  "failureThreshold",
  "scheme",
  "protocol",
  "apiVersion",
  "resources",
  "defaultMode",
]);

/** As plain JSON: objects read through the client are model classes, watched ones are not. */
function plain(value: unknown): unknown {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** Where actual differs from expected beyond defaulted fields, as a path; undefined if nowhere. */
function deviation(expected: unknown, actual: unknown, path: string): string | undefined {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) return path;
    for (const [i, item] of expected.entries()) {
      const found = deviation(item, actual[i], `${path}[${i}]`);
      if (found) return found;
    }
    return undefined;
  }
  if (expected !== null && typeof expected === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) return path;
    const want = expected as Record<string, unknown>;
    const have = actual as Record<string, unknown>;
    for (const key of Object.keys({ ...want, ...have })) {
      if (!(key in want) && defaulted.has(key)) continue;
      const found = deviation(want[key], have[key], `${path}.${key}`);
      if (found) return found;
    }
    return undefined;
  }
  return expected === actual ? undefined : path;
}

/** The operator's CA rotates; a pod keeps the bundle it was injected with. */
function withoutOperatorCa(container: V1Container): V1Container {
  return {
    ...container,
    env: container.env?.map((e) => (e.name === sidecarEnv.operatorCa ? { name: e.name } : e)),
  };
}

/**
 * Why a pod labelled for injection is not one the webhook injected for these connections (a
 * pod created without the webhook and labelled afterwards, or changed since), or undefined:
 * its sidecar and volumes exactly as injected, no other container near the sidecar's token or
 * state, and the rest within the rules a tagged pod is admitted by.
 */
export function taggedPodDeviation(
  pod: V1Pod,
  connections: Connection[],
  sidecar: SidecarSettings,
  rules: PodRuleOptions,
): string | undefined {
  const spec = pod.spec;
  if (!spec) return "it has no spec";
  const injected = injectedParts(runIdentityEnv(undefined), connections, sidecar);
  const init = spec.initContainers ?? [];
  for (const [i, container] of injected.initContainers.entries()) {
    const found = deviation(
      plain(withoutOperatorCa(container)),
      plain(init[i] && withoutApiAccessMount(withoutOperatorCa(init[i]))),
      `spec.initContainers[${i}]`,
    );
    if (found) return `${found} is not as langgraph-jit injected it`;
  }
  const ours = new Set(injected.volumes.map((v) => v.name));
  for (const volume of injected.volumes) {
    const index = (spec.volumes ?? []).findIndex((v) => v.name === volume.name);
    const found = deviation(plain(volume), plain(spec.volumes?.[index]), `spec.volumes[${index}]`);
    if (found) return `${found} (volume ${volume.name}) is not as langgraph-jit injected it`;
  }
  const rest: V1PodSpec = {
    ...spec,
    initContainers: init.slice(injected.initContainers.length).map(withoutTrustMount),
    containers: spec.containers.map(withoutTrustMount),
    volumes: (spec.volumes ?? []).filter((v) => !ours.has(v.name)),
  };
  try {
    checkPodTemplate({ metadata: pod.metadata, spec: rest }, { ...rules, tagged: true });
  } catch (error) {
    if (error instanceof TemplateRefused) return error.message;
    throw error;
  }
  return undefined;
}

/**
 * The API server's ServiceAccount admission runs again after the webhook changed the pod, and
 * mounts the pod's own API token (kube-api-access-*) into the containers it added too.
 */
function withoutApiAccessMount(container: V1Container): V1Container {
  const mounts = container.volumeMounts?.filter(
    (m) => !(m.name.startsWith("kube-api-access-") && m.mountPath === serviceAccountMountPath),
  );
  return { ...container, volumeMounts: mounts };
}

const serviceAccountMountPath = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The graph's read-only view of the pod CA, which withSidecar adds to each of its containers. */
function withoutTrustMount(container: V1Container): V1Container {
  const mounts = container.volumeMounts?.filter((m) => m.name !== trustVolume);
  return { ...container, volumeMounts: mounts };
}
