// The API objects a pod template reads or makes through the kubelet and controllers: Secrets,
// ConfigMaps and claims. The operator would fetch them with its own rights, so each is checked
// as the requester (template-review.ts).
import type {
  V1Container,
  V1PodTemplateSpec,
  V1TypedObjectReference,
} from "@kubernetes/client-node";
import { TemplateRefused } from "./pod-rules.ts";

export interface ObjectReference {
  group: string;
  resource: string;
  verb: "get" | "create";
  /** Absent for a create: the object does not exist yet. */
  name?: string;
  /** Where the template names it, from the template's root. */
  field: string;
}

const snapshotGroup = "snapshot.storage.k8s.io";

/** Every object the template names, with the verb the requester needs on it. */
export function referencedObjects(template: V1PodTemplateSpec): ObjectReference[] {
  const spec = template.spec;
  if (!spec) return [];
  const refs: ObjectReference[] = [];
  const get = (resource: string, name: string | undefined, field: string) => {
    if (name) refs.push({ group: "", resource, verb: "get", name, field });
  };
  for (const [index, secret] of (spec.imagePullSecrets ?? []).entries()) {
    get("secrets", secret.name, `spec.imagePullSecrets[${index}]`);
  }
  const containers: [V1Container, string][] = [
    ...(spec.initContainers ?? []).map((c, i): [V1Container, string] => [
      c,
      `spec.initContainers[${i}]`,
    ]),
    ...spec.containers.map((c, i): [V1Container, string] => [c, `spec.containers[${i}]`]),
  ];
  for (const [container, path] of containers) {
    for (const [index, env] of (container.env ?? []).entries()) {
      const at = `${path}.env[${index}].valueFrom`;
      get("secrets", env.valueFrom?.secretKeyRef?.name, `${at}.secretKeyRef`);
      get("configmaps", env.valueFrom?.configMapKeyRef?.name, `${at}.configMapKeyRef`);
    }
    for (const [index, from] of (container.envFrom ?? []).entries()) {
      get("secrets", from.secretRef?.name, `${path}.envFrom[${index}].secretRef`);
      get("configmaps", from.configMapRef?.name, `${path}.envFrom[${index}].configMapRef`);
    }
  }
  for (const [index, volume] of (spec.volumes ?? []).entries()) {
    const path = `spec.volumes[${index}]`;
    get("secrets", volume.secret?.secretName, `${path}.secret`);
    get("configmaps", volume.configMap?.name, `${path}.configMap`);
    get(
      "persistentvolumeclaims",
      volume.persistentVolumeClaim?.claimName,
      `${path}.persistentVolumeClaim`,
    );
    for (const [i, source] of (volume.projected?.sources ?? []).entries()) {
      const at = `${path}.projected.sources[${i}]`;
      get("secrets", source.secret?.name, `${at}.secret`);
      get("configmaps", source.configMap?.name, `${at}.configMap`);
    }
    const claim = volume.ephemeral?.volumeClaimTemplate?.spec;
    if (volume.ephemeral) {
      // The ephemeral volume controller makes the claim for the pod.
      refs.push({
        group: "",
        resource: "persistentvolumeclaims",
        verb: "create",
        field: `${path}.ephemeral`,
      });
    }
    const at = `${path}.ephemeral.volumeClaimTemplate.spec`;
    if (claim?.dataSource) refs.push(dataSourceReference(claim.dataSource, `${at}.dataSource`));
    if (claim?.dataSourceRef) {
      refs.push(dataSourceReference(claim.dataSourceRef, `${at}.dataSourceRef`));
    }
  }
  return refs;
}

/** A claim's data source: a claim to clone or a snapshot to restore, read as the requester. */
function dataSourceReference(source: V1TypedObjectReference, field: string): ObjectReference {
  if (source.namespace) {
    throw new TemplateRefused(
      `${field}.namespace: a run's claims are filled from its own namespace only`,
    );
  }
  const group = source.apiGroup ?? "";
  if (group === "" && source.kind === "PersistentVolumeClaim") {
    return { group, resource: "persistentvolumeclaims", verb: "get", name: source.name, field };
  }
  if (group === snapshotGroup && source.kind === "VolumeSnapshot") {
    return { group, resource: "volumesnapshots", verb: "get", name: source.name, field };
  }
  throw new TemplateRefused(
    `${field}: a run's claims are filled only from a PersistentVolumeClaim or a VolumeSnapshot, not ${source.kind}`,
  );
}
