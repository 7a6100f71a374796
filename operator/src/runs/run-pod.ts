// Whether a pod is what the Job controller made from the run's Job: anyone who may create pods
// can claim a Job as owner and copy its labels, so the credential API also holds the pod to
// the Job's template, field by field: every container (the sidecar's env, mounts, hooks,
// probes and security context included), every volume (the token's audience and lifetime
// included) and what is pod-wide. Only resources may differ, which a LimitRange fills in.
import { isDeepStrictEqual } from "node:util";
import type { V1Container, V1Job, V1Pod, V1PodSpec } from "@kubernetes/client-node";

const jobControllerLabels = {
  uid: "batch.kubernetes.io/controller-uid",
  name: "batch.kubernetes.io/job-name",
} as const;

/** Pod-wide fields that decide what the pod's containers can reach or who they run as. */
const podWideFields = [
  "serviceAccountName",
  "automountServiceAccountToken",
  "securityContext",
  "hostNetwork",
  "hostPID",
  "hostIPC",
  "shareProcessNamespace",
  "hostAliases",
  "dnsPolicy",
  "dnsConfig",
  "hostname",
  "subdomain",
  "setHostnameAsFQDN",
  "resourceClaims",
] as const satisfies (keyof V1PodSpec)[];

/** As plain JSON: objects read through the client are model classes, watched ones are not. */
function plain<T>(value: T): T | null {
  return value === undefined ? null : (JSON.parse(JSON.stringify(value)) as T);
}

function withoutResources(container: V1Container): V1Container {
  const { resources: _filledByLimitRanges, ...rest } = container;
  return rest;
}

function containerDeviation(
  kind: string,
  actual: V1Container[] | undefined,
  expected: V1Container[] | undefined,
): string | undefined {
  const pod = (actual ?? []).map(withoutResources);
  const template = (expected ?? []).map(withoutResources);
  if (pod.length !== template.length) {
    return `${kind} has ${pod.length} containers, the Job's template ${template.length}`;
  }
  for (const [index, container] of pod.entries()) {
    const want = (plain(template[index]) ?? {}) as { [field: string]: unknown };
    const have = (plain(container) ?? {}) as { [field: string]: unknown };
    const field = Object.keys({ ...want, ...have }).find(
      (key) => !isDeepStrictEqual(have[key], want[key]),
    );
    if (field)
      return `${kind}[${index}] "${container.name}".${field} differs from the Job's template`;
  }
  return undefined;
}

/** Verdicts per cached pod object: the informers replace an object when it changes. */
const verdicts = new WeakMap<V1Pod, { job: V1Job; deviation: string | undefined }>();

/** Why the pod is not the Job's own, or undefined when it is. */
export function podDeviation(pod: V1Pod, job: V1Job): string | undefined {
  const known = verdicts.get(pod);
  if (known?.job === job) return known.deviation;
  const deviation = deviationOf(pod, job);
  verdicts.set(pod, { job, deviation });
  return deviation;
}

function deviationOf(pod: V1Pod, job: V1Job): string | undefined {
  const labels = pod.metadata?.labels ?? {};
  if (labels[jobControllerLabels.uid] !== job.metadata?.uid) {
    return `its label ${jobControllerLabels.uid} is not the uid of Job ${job.metadata?.name}`;
  }
  if (labels[jobControllerLabels.name] !== job.metadata?.name) {
    return `its label ${jobControllerLabels.name} is not Job ${job.metadata?.name}`;
  }
  const spec = pod.spec;
  const template = job.spec?.template.spec;
  if (!spec || !template) return "it has no spec";
  if ((spec.ephemeralContainers ?? []).length > 0) return "it has ephemeral containers";
  const containers =
    containerDeviation("initContainers", spec.initContainers, template.initContainers) ??
    containerDeviation("containers", spec.containers, template.containers);
  if (containers) return containers;
  if (!isDeepStrictEqual(plain(spec.volumes ?? []), plain(template.volumes ?? []))) {
    return "its volumes differ from the Job's template";
  }
  const field = podWideFields.find(
    (key) => !isDeepStrictEqual(plain(spec[key]), plain(template[key])),
  );
  return field ? `spec.${field} differs from the Job's template` : undefined;
}
