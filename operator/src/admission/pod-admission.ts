// Admission of a tagged workload's pod (label langgraph-jit.dev/inject=true in a namespace
// labelled langgraph-jit.dev/inject=enabled): it gets exactly the sidecar a run's Job gets, or
// is refused with the reason. Its requester is its ServiceAccount, the identity the API server
// will authenticate its token as; nothing in its labels or annotations can change that. What
// it may not do is what a run's pod may not, except keep its own ServiceAccount token, which
// must then not reach a Connection's Secret.
import type { V1Pod } from "@kubernetes/client-node";
import { errorMessage } from "../../../api/errors.ts";
import { type AccessPolicy, annotations, type Connection, labels } from "../../../api/v1alpha1.ts";
import { AccessAnnotationError, parseAccessAnnotation } from "../injection/access-annotation.ts";
import { evaluateAccess } from "../policy/evaluate-access.ts";
import type { NamespaceConnections } from "../policy/namespace-connections.ts";
import { runIdentityEnv, type SidecarSettings, withSidecar } from "../runs/job-builder.ts";
import { checkPodTemplate, type PodRuleOptions, TemplateRefused } from "../runs/pod-rules.ts";
import {
  type AccountMay,
  accountOf,
  accountReach,
  maxDurationOf,
  mountedConnectionSecret,
  taggedPodRequester,
} from "../runs/tagged-pod.ts";
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
  /** The connections the namespace may name (connectionsIn). */
  connections(namespace: string): NamespaceConnections;
  rules: PodRuleOptions;
  sidecar: () => SidecarSettings;
  /** Whether the API server's authorizer lets the pod's ServiceAccount do something. */
  accountMay: AccountMay;
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

  const requester = taggedPodRequester(pod);
  const named = deps.connections(namespace);
  const { connections } = named;
  const decision = evaluateAccess({
    namespace,
    requester,
    access,
    maxDurationMs,
    policies: deps.policies(namespace),
    ...named,
  });
  if (!decision.allowed) {
    return deny(request, `${accessField}: ${decision.reason}: ${decision.message}`);
  }

  try {
    checkPodTemplate({ metadata: pod.metadata, spec: pod.spec }, { ...deps.rules, tagged: true });
  } catch (error) {
    if (error instanceof TemplateRefused) return deny(request, error.message, 422);
    throw error;
  }
  const mounted = mountedConnectionSecret(pod, connections);
  if (mounted) return deny(request, mounted, 422);
  // The graph would see what the sidecar exists to hide, through the pod's own API token.
  try {
    const reach = await accountReach(pod, connections, deps.accountMay);
    if (reach) return deny(request, reach);
  } catch (error) {
    return deny(
      request,
      `the access of ServiceAccount "${accountOf(pod)}" could not be reviewed: ${errorMessage(error)}`,
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
