// Admission of LangGraphRuns: the requester is stamped from the API server's authentication
// of the request (request.userInfo), which no client can forge, and never changes afterwards;
// the run's spec never changes either; its pod template is reviewed as the requester; and
// its status is written by the operator alone.
import { isDeepStrictEqual } from "node:util";
import type { V1Pod } from "@kubernetes/client-node";
import { errorMessage } from "../../../api/errors.ts";
import {
  type AccessPolicy,
  annotations,
  type Connection,
  defaultRunServiceAccount,
  type LangGraphRun,
  labels,
  type Requester,
} from "../../../api/v1alpha1.ts";
import { TemplateRefused } from "../runs/pod-rules.ts";
import { requesterOf } from "../runs/requester.ts";
import { taggedPodRequester } from "../runs/tagged-pod.ts";
import { reviewTemplate, type TemplateReviewDeps } from "../runs/template-review.ts";
import {
  type AdmissionRequest,
  type AdmissionResponse,
  addAnnotations,
  allow,
  deny,
  type UserInfo,
} from "./admission-review.ts";

const requesterField = `metadata.annotations[${annotations.requester}]`;

export function requesterFrom(user: UserInfo): Requester {
  const extra = user.extra && Object.keys(user.extra).length > 0 ? { extra: user.extra } : {};
  return {
    username: user.username ?? "",
    uid: user.uid ?? "",
    groups: user.groups ?? [],
    ...extra,
  };
}

const sourceRefused =
  "spec.source: only langgraph-jit records a tagged pod as a run; write spec.template instead";

/**
 * Mutating webhook: stamps the requester on CREATE and refuses a client-supplied one. A tagged
 * pod's run comes from the operator alone, stamped with the pod's ServiceAccount, which the
 * validating webhook checks against the pod.
 */
export function mutateRun(
  request: AdmissionRequest<LangGraphRun>,
  operatorUsername: string,
): AdmissionResponse {
  const run = request.object;
  if (request.operation !== "CREATE" || !run) return allow(request);
  if (run.spec?.source) {
    return request.userInfo.username === operatorUsername
      ? allow(request)
      : deny(request, sourceRefused);
  }
  if (run.metadata?.annotations?.[annotations.requester] !== undefined) {
    return deny(
      request,
      `${requesterField} is set by langgraph-jit from your authenticated identity; a request may not set it`,
    );
  }
  return allow(
    request,
    addAnnotations(run, {
      [annotations.requester]: JSON.stringify(requesterFrom(request.userInfo)),
    }),
  );
}

/** What the validating webhook reads: the namespace's policies and Connections, from the caches. */
export interface RunAdmissionDeps {
  policies(namespace: string): AccessPolicy[];
  connections(namespace: string): Connection[];
  templateReview: TemplateReviewDeps;
  /** A tagged pod, as the cache knows it. */
  taggedPod(namespace: string, name: string): V1Pod | undefined;
  /** The operator's own user name, the only one that records tagged pods as runs. */
  operatorUsername: string;
}

/**
 * Validating webhook, after every mutation: the stamp matches the authenticated user on
 * CREATE and the pod template passes review as that user; on UPDATE neither the stamp nor the
 * spec changes (like a Job's template, a run's spec is fixed when it is created).
 */
export async function validateRun(
  request: AdmissionRequest<LangGraphRun>,
  deps: RunAdmissionDeps,
): Promise<AdmissionResponse> {
  const run = request.object;
  if (!run) return allow(request);
  if (request.operation === "UPDATE") {
    const old = request.oldObject;
    const before = old?.metadata?.annotations?.[annotations.requester];
    if (run.metadata?.annotations?.[annotations.requester] !== before) {
      return deny(request, `${requesterField} is immutable`);
    }
    if (!isDeepStrictEqual(run.spec, old?.spec)) {
      const changed = Object.keys({ ...run.spec, ...old?.spec }).filter(
        (field) =>
          !isDeepStrictEqual(
            run.spec?.[field as keyof LangGraphRun["spec"]],
            old?.spec?.[field as keyof LangGraphRun["spec"]],
          ),
      );
      return deny(
        request,
        `${changed.map((f) => `spec.${f}`).join(", ")}: a run's spec cannot change once it is created; create a new run instead`,
      );
    }
    return allow(request);
  }
  if (request.operation !== "CREATE") return allow(request);
  if (run.spec.source) return validateSourceRun(request, run, deps);

  const stamped = requesterOf(run);
  if (!stamped || !isDeepStrictEqual(stamped, requesterFrom(request.userInfo))) {
    return deny(request, `${requesterField} does not match the authenticated requester`);
  }
  const namespace = request.namespace ?? run.metadata?.namespace ?? "";
  // Which account applies is the reconciler's to decide from the granting policies; here the
  // template may name only one that some policy of the namespace names for runs.
  const serviceAccounts = new Set([
    defaultRunServiceAccount,
    ...deps.policies(namespace).flatMap((p) => p.spec.runServiceAccountName ?? []),
  ]);
  try {
    if (!run.spec.template) return deny(request, "spec.template: a run needs a pod template", 422);
    await reviewTemplate(
      {
        template: run.spec.template,
        namespace,
        requester: stamped,
        serviceAccounts,
        connections: deps.connections(namespace),
      },
      deps.templateReview,
    );
  } catch (error) {
    if (error instanceof TemplateRefused) {
      return deny(request, `spec.template.${error.message}`, 422);
    }
    // Fail closed: a template that could not be reviewed is not admitted.
    return deny(
      request,
      `the pod template could not be reviewed as ${stamped.username}: ${errorMessage(error)}`,
      503,
    );
  }
  return allow(request);
}

/** A tagged pod's run: the operator's, for a pod that exists, stamped as that pod's account. */
function validateSourceRun(
  request: AdmissionRequest<LangGraphRun>,
  run: LangGraphRun,
  deps: RunAdmissionDeps,
): AdmissionResponse {
  const source = run.spec.source;
  if (!source || request.userInfo.username !== deps.operatorUsername) {
    return deny(request, sourceRefused);
  }
  const namespace = request.namespace ?? run.metadata?.namespace ?? "";
  const pod = deps.taggedPod(namespace, source.pod);
  if (pod?.metadata?.uid !== source.uid || pod.metadata?.labels?.[labels.inject] !== "true") {
    return deny(
      request,
      `spec.source: tagged pod ${namespace}/${source.pod} (uid ${source.uid}) is not known`,
    );
  }
  const account = taggedPodRequester(pod);
  if (!isDeepStrictEqual(requesterOf(run), account)) {
    return deny(request, `${requesterField} must be the pod's ServiceAccount, ${account.username}`);
  }
  return allow(request);
}

/**
 * Validating webhook on langgraphruns/status: a run's phase, deadline, Job and approval are
 * the operator's to decide, so only the operator's own identity may write them.
 */
export function validateRunStatus(
  request: AdmissionRequest<LangGraphRun>,
  operatorUsername: string,
): AdmissionResponse {
  if (request.operation !== "UPDATE" || request.userInfo.username === operatorUsername) {
    return allow(request);
  }
  return deny(
    request,
    `status of LangGraphRun ${request.namespace}/${request.name} is written by langgraph-jit (${operatorUsername}) alone, not by ${request.userInfo.username}`,
  );
}
