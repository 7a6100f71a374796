// A tagged pod as the operator reads it: how long one credential of it may live, and whether it
// is still the pod the webhook injected.
import type { V1Container, V1Pod, V1PodSpec } from "@kubernetes/client-node";
import { parseDuration } from "../../../api/duration.ts";
import { sidecarEnv } from "../../../api/sidecar-contract.ts";
import {
  type AnyConnection,
  annotations,
  connectionSecretNames,
  labels,
  type Requester,
} from "../../../api/v1alpha1.ts";
import { isClusterConnection } from "../policy/namespace-connections.ts";
import { injectedParts, runIdentityEnv, type SidecarSettings } from "./job-builder.ts";
import { trustVolume } from "./pod-contract.ts";
import { referencedObjects } from "./pod-references.ts";
import { checkPodTemplate, type PodRuleOptions, TemplateRefused } from "./pod-rules.ts";
import { serviceAccountRequester } from "./requester.ts";

const shortestMs = 60 * 1000;
const longestMs = 168 * 60 * 60 * 1000;

/** The pod's max-duration annotation in ms, undefined when absent; throws naming what is wrong. */
export function maxDurationOf(pod: V1Pod): number | undefined {
  const text = pod.metadata?.annotations?.[annotations.maxDuration];
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  // A credential re-issued every few seconds would keep the operator and its sidecar busy.
  if (ms < shortestMs || ms > longestMs) {
    throw new Error(`"${text}" must be a duration from 1m to 168h, such as 30m or 1h`);
  }
  return ms;
}

/**
 * Fields the API server fills in on a created pod, with the values it fills in: only those are
 * taken as the webhook's pod (a hand-made sidecar could not, say, copy its logs into the pod's
 * status). Resources may be anything a LimitRange fills in.
 */
const defaulted: ReadonlyMap<string, unknown> = new Map<string, unknown>([
  ["terminationMessagePath", "/dev/termination-log"],
  ["terminationMessagePolicy", "File"],
  ["timeoutSeconds", 1],
  ["successThreshold", 1],
  ["failureThreshold", 3],
  ["scheme", "HTTP"],
  ["protocol", "TCP"],
  ["apiVersion", "v1"],
  ["defaultMode", 420],
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
      if (!(key in want) && (key === "resources" || defaulted.get(key) === have[key])) continue;
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
  connections: AnyConnection[],
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
  // The run's label is the operator's own (it puts the pod under the run's NetworkPolicy).
  const { [labels.run]: _ours, ...podLabels } = pod.metadata?.labels ?? {};
  try {
    checkPodTemplate(
      { metadata: { ...pod.metadata, labels: podLabels }, spec: rest },
      { ...rules, tagged: true },
    );
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

/** Whether the API server's authorizer lets the account do verb on a resource of the namespace. */
export type AccountMay = (
  account: Requester,
  namespace: string,
  attributes: { verb: string; resource: string; subresource?: string; name?: string },
) => Promise<boolean>;

/** The identity the API server gives the pod's ServiceAccount token. */
export function taggedPodRequester(pod: V1Pod): Requester {
  return serviceAccountRequester(pod.metadata?.namespace ?? "", accountOf(pod));
}

export function accountOf(pod: V1Pod): string {
  return pod.spec?.serviceAccountName || "default";
}

/** The Secrets of the pod's namespace that hold a connection's credentials, with its name. */
function localSecrets(connections: AnyConnection[]): (readonly [string, string])[] {
  return connections
    .filter((c) => !isClusterConnection(c))
    .flatMap((c) => connectionSecretNames(c).map((s) => [s, c.metadata?.name ?? ""] as const));
}

/**
 * A Connection's Secret the pod mounts or reads into its environment, as the refusal says it.
 * A ClusterConnection's live in the credentials namespace, which no team pod can reference.
 */
export function mountedConnectionSecret(
  pod: V1Pod,
  connections: AnyConnection[],
): string | undefined {
  const owners = new Map(localSecrets(connections));
  for (const ref of referencedObjects({ metadata: pod.metadata, spec: pod.spec })) {
    const owner = ref.resource === "secrets" && ref.name ? owners.get(ref.name) : undefined;
    if (owner !== undefined) {
      return `${ref.field}: Secret "${ref.name}" holds the credentials of Connection "${owner}", which only langgraph-jit may read`;
    }
  }
  return undefined;
}

/**
 * What the pod's own API token could do to reach the credentials the sidecar holds for it, as
 * the refusal says it, or undefined: mint a token of the pod's account for the sidecar's
 * audience, or read a Secret of the namespace holding a Connection's credentials (or every
 * Secret), or start a pod that mounts one. Throws when the authorizer cannot answer.
 */
export async function accountReach(
  pod: V1Pod,
  connections: AnyConnection[],
  accountMay: AccountMay,
): Promise<string | undefined> {
  if (!connections.some((c) => connectionSecretNames(c).length > 0)) return undefined;
  const account = accountOf(pod);
  const secrets = localSecrets(connections);
  type Check = [string, Parameters<AccountMay>[2]];
  // Only a Secret of the pod's namespace can be read or mounted by its account.
  const local: Check[] = [
    ["list the namespace's Secrets", { verb: "list", resource: "secrets" }],
    ["watch the namespace's Secrets", { verb: "watch", resource: "secrets" }],
    ["create pods, which may mount any Secret", { verb: "create", resource: "pods" }],
  ];
  const checks: Check[] = [
    ...(secrets.length > 0 ? local : []),
    [
      "mint its own tokens, for any audience",
      { verb: "create", resource: "serviceaccounts", subresource: "token", name: account },
    ],
    ...secrets.map(
      ([secret, connection]): Check => [
        `get Secret "${secret}" of Connection "${connection}"`,
        { verb: "get", resource: "secrets", name: secret },
      ],
    ),
  ];
  const requester = taggedPodRequester(pod);
  const namespace = pod.metadata?.namespace ?? "";
  const answers = await Promise.all(
    checks.map(([, what]) => accountMay(requester, namespace, what)),
  );
  const reach = checks.find((_, index) => answers[index])?.[0];
  return reach
    ? `spec.serviceAccountName: ServiceAccount "${account}" may ${reach}, so the pod's graph could reach the credentials the sidecar holds for it; run the pod as an account that may not`
    : undefined;
}
