// Admission of a tagged workload's pod (label langgraph-jit.dev/inject=true in a namespace
// labelled langgraph-jit.dev/inject=enabled): it gets exactly the sidecar a run's Job gets, or
// is refused with the reason. Its requester is its ServiceAccount, the identity the API server
// will authenticate its token as; nothing in its labels or annotations can change that. What
// it may not do is what a run's pod may not, except keep its own ServiceAccount token, which
// must then not reach a Connection's Secret.
import type { V1Pod } from "@kubernetes/client-node";
import { errorMessage } from "../../../api/errors.ts";
import {
  type AccessPolicy,
  annotations,
  type Connection,
  connectionSecretNames,
  labels,
  type Requester,
} from "../../../api/v1alpha1.ts";
import { AccessAnnotationError, parseAccessAnnotation } from "../injection/access-annotation.ts";
import { maxDurationOf } from "../injection/tagged-pod.ts";
import { evaluateAccess } from "../policy/evaluate-access.ts";
import { runIdentityEnv, type SidecarSettings, withSidecar } from "../runs/job-builder.ts";
import { referencedObjects } from "../runs/pod-references.ts";
import { checkPodTemplate, type PodRuleOptions, TemplateRefused } from "../runs/pod-rules.ts";
import { serviceAccountRequester } from "../runs/requester.ts";
import {
  type AdmissionRequest,
  type AdmissionResponse,
  allow,
  deny,
  type JsonPatchOperation,
  pointerSegment,
} from "./admission-review.ts";

const defaultContainer = "kubectl.kubernetes.io/default-container";

export interface PodAdmissionDeps {
  policies(namespace: string): AccessPolicy[];
  connections(namespace: string): Connection[];
  rules: PodRuleOptions;
  sidecar: () => SidecarSettings;
  /** Whether the API server's authorizer lets the ServiceAccount do verb on secrets. */
  serviceAccountMay(
    account: Requester,
    namespace: string,
    verb: "get" | "list" | "watch",
    secret?: string,
  ): Promise<boolean>;
}

/** Mutating webhook on pods CREATE, reached only by tagged pods in tagged namespaces. */
export async function admitTaggedPod(
  request: AdmissionRequest<V1Pod>,
  deps: PodAdmissionDeps,
): Promise<AdmissionResponse> {
  const pod = request.object;
  if (request.operation !== "CREATE" || !pod?.spec) return allow(request);
  if (pod.metadata?.labels?.[labels.inject] !== "true") return allow(request);
  const namespace = request.namespace ?? pod.metadata?.namespace ?? "";
  const accessField = `metadata.annotations[${annotations.access}]`;

  let access: ReturnType<typeof parseAccessAnnotation>;
  let maxDurationMs: number;
  try {
    access = parseAccessAnnotation(pod.metadata?.annotations?.[annotations.access]);
    maxDurationMs = maxDurationOf(pod) ?? 0;
  } catch (error) {
    const field =
      error instanceof AccessAnnotationError
        ? accessField
        : `metadata.annotations[${annotations.maxDuration}]`;
    return deny(request, `${field}: ${errorMessage(error)}`, 422);
  }

  const account = pod.spec.serviceAccountName || "default";
  const requester = serviceAccountRequester(namespace, account);
  const connections = deps.connections(namespace);
  const decision = evaluateAccess({
    namespace,
    requester,
    access,
    maxDurationMs,
    policies: deps.policies(namespace),
    connections,
  });
  if (!decision.allowed) {
    return deny(request, `${accessField}: ${decision.reason}: ${decision.message}`);
  }

  const secretOwners = owners(connections);
  try {
    checkPodTemplate({ metadata: pod.metadata, spec: pod.spec }, { ...deps.rules, tagged: true });
    for (const ref of referencedObjects({ metadata: pod.metadata, spec: pod.spec })) {
      const owner = ref.resource === "secrets" && ref.name ? secretOwners.get(ref.name) : undefined;
      if (owner !== undefined) {
        throw new TemplateRefused(
          `${ref.field}: Secret "${ref.name}" holds the credentials of Connection "${owner}", which only langgraph-jit may read`,
        );
      }
    }
  } catch (error) {
    if (error instanceof TemplateRefused) return deny(request, error.message, 422);
    throw error;
  }

  // The graph would see what the sidecar exists to hide, through the pod's own API token.
  try {
    const reach = await secretsReach(deps, requester, namespace, [...secretOwners]);
    if (reach) {
      return deny(
        request,
        `spec.serviceAccountName: ServiceAccount "${account}" may ${reach}, so the pod's graph could read the credentials the sidecar holds for it; run the pod as an account that may not read them`,
      );
    }
  } catch (error) {
    return deny(
      request,
      `the access of ServiceAccount "${account}" could not be reviewed: ${errorMessage(error)}`,
      503,
    );
  }

  const connectionsByAccess = access.flatMap(
    (a) => connections.find((c) => c.metadata?.name === a.connection) ?? [],
  );
  const spec = withSidecar(
    pod.spec,
    runIdentityEnv(undefined),
    connectionsByAccess,
    deps.sidecar(),
  );
  const patch: JsonPatchOperation[] = [{ op: "replace", path: "/spec", value: spec }];
  // `kubectl logs` and `exec` go to the graph, as for a run's pod.
  if (!pod.metadata?.annotations?.[defaultContainer]) {
    patch.push({
      op: "add",
      path: `/metadata/annotations/${pointerSegment(defaultContainer)}`,
      value: pod.spec.containers[0]?.name ?? "",
    });
  }
  return allow(request, patch);
}

/** Each Connection's Secrets, to the Connection that holds them. */
function owners(connections: Connection[]): Map<string, string> {
  return new Map(
    connections.flatMap((c) => connectionSecretNames(c).map((s) => [s, c.metadata?.name ?? ""])),
  );
}

/** What the account may do to a Connection's Secret, if anything ("get Secret kb-api"). */
async function secretsReach(
  deps: PodAdmissionDeps,
  account: Requester,
  namespace: string,
  secrets: [string, string][],
): Promise<string | undefined> {
  if (secrets.length === 0) return undefined;
  const checks: [string, Promise<boolean>][] = [
    ["list the namespace's Secrets", deps.serviceAccountMay(account, namespace, "list")],
    ["watch the namespace's Secrets", deps.serviceAccountMay(account, namespace, "watch")],
    ...secrets.map(([secret, connection]): [string, Promise<boolean>] => [
      `get Secret "${secret}" of Connection "${connection}"`,
      deps.serviceAccountMay(account, namespace, "get", secret),
    ]),
  ];
  const answers = await Promise.all(checks.map(([, answer]) => answer));
  return checks.find((_, index) => answers[index])?.[0];
}
