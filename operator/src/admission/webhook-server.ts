// The admission routes the API server calls; served on the operator's HTTPS server.

import type { V1Pod } from "@kubernetes/client-node";
import type { Logger } from "pino";
import {
  type AccessPolicy,
  type Approval,
  type HeldCommand,
  type LangGraphRun,
  labels,
} from "../../../api/v1alpha1.ts";
import { HttpError, type Route, readBody } from "../server/https-server.ts";
import type { OperatorMetrics } from "../server/metrics.ts";
import {
  type AdmissionRequest,
  type AdmissionResponse,
  type AdmissionReview,
  allow,
  deny,
} from "./admission-review.ts";
import {
  type ApprovalAdmissionDeps,
  mutateApproval,
  validateApproval,
  validateHeldCommand,
} from "./approval-admission.ts";
import { admitTaggedPod, type PodAdmissionDeps } from "./pod-admission.ts";
import { type PodConnectDeps, type PodConnectOptions, validatePodConnect } from "./pod-connect.ts";
import { type PolicyAdmissionDeps, validatePolicy } from "./policy-admission.ts";
import {
  mutateRun,
  type RunAdmissionDeps,
  validateRun,
  validateRunStatus,
} from "./run-admission.ts";
import { webhookPaths } from "./webhook-configurations.ts";

const maxBodyBytes = 3 * 1024 * 1024;

export interface AdmissionRoutesOptions {
  runs: RunAdmissionDeps;
  approvals: ApprovalAdmissionDeps;
  policies: PolicyAdmissionDeps;
  /** Tagged workloads' pods, when the operator injects them. */
  pods?: PodAdmissionDeps;
  podConnect: PodConnectDeps;
  /** The operator's own user name, the only one that may write a run's status. */
  operatorUsername: string;
  logger: Logger;
  metrics: OperatorMetrics;
}

type Handler<T> = (request: AdmissionRequest<T>) => AdmissionResponse | Promise<AdmissionResponse>;

/**
 * A run's pod, or a tagged pod, takes no ephemeral containers: they could read the sidecar's
 * memory or token.
 */
export function validateEphemeralContainers(request: AdmissionRequest<V1Pod>): AdmissionResponse {
  const isRunPod = [request.object, request.oldObject].some(
    (pod) =>
      pod?.metadata?.labels?.[labels.run] !== undefined ||
      pod?.metadata?.labels?.[labels.inject] === "true",
  );
  if (!isRunPod) return allow(request);
  return deny(
    request,
    `pod ${request.namespace}/${request.name} belongs to a LangGraphRun: its pod takes no ephemeral containers, which could read the langgraph-jit sidecar's memory and token`,
  );
}

function parseRequest<T>(body: string): AdmissionRequest<T> {
  let review: AdmissionReview<T>;
  try {
    review = JSON.parse(body) as AdmissionReview<T>;
  } catch {
    throw new HttpError(400, "BadRequest", "body is not JSON");
  }
  if (review?.kind !== "AdmissionReview" || typeof review.request?.uid !== "string") {
    throw new HttpError(
      400,
      "BadRequest",
      "body is not an admission.k8s.io/v1 AdmissionReview with a request",
    );
  }
  return review.request;
}

export function admissionRoutes(options: AdmissionRoutesOptions): Record<string, Route> {
  const { logger, metrics } = options;
  const route = <T>(webhook: string, handle: Handler<T>): Route => ({
    method: "POST",
    async handle(request) {
      const admission = parseRequest<T>(await readBody(request, maxBodyBytes));
      const answer = await handle(admission);
      metrics.webhookDecisions.inc({ webhook, decision: answer.allowed ? "allowed" : "denied" });
      if (!answer.allowed) {
        const { namespace, name, operation, userInfo } = admission;
        logger.info(
          { webhook, namespace, name, operation, user: userInfo.username },
          `admission denied: ${answer.status?.message}`,
        );
      }
      return {
        status: 200,
        body: { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: answer },
      };
    },
  });
  return {
    [webhookPaths.mutateRun]: route<LangGraphRun>("mutate-run", (request) =>
      mutateRun(request, options.operatorUsername),
    ),
    [webhookPaths.validateRun]: route<LangGraphRun>("validate-run", (request) =>
      validateRun(request, options.runs),
    ),
    [webhookPaths.mutateApproval]: route<Approval>("mutate-approval", (request) =>
      mutateApproval(request, options.approvals),
    ),
    [webhookPaths.validateApproval]: route<Approval>("validate-approval", (request) =>
      validateApproval(request, options.approvals),
    ),
    [webhookPaths.validateHeldCommand]: route<HeldCommand>("validate-held-command", (request) =>
      validateHeldCommand(request, options.operatorUsername),
    ),
    [webhookPaths.validatePolicy]: route<AccessPolicy>("validate-policy", (request) =>
      validatePolicy(request, options.policies),
    ),
    [webhookPaths.validateRunStatus]: route<LangGraphRun>("validate-run-status", (request) =>
      validateRunStatus(request, options.operatorUsername),
    ),
    [webhookPaths.validateEphemeralContainers]: route(
      "validate-ephemeral-containers",
      validateEphemeralContainers,
    ),
    [webhookPaths.validatePodConnect]: route<PodConnectOptions>("validate-pod-connect", (request) =>
      validatePodConnect(request, options.podConnect),
    ),
    ...(options.pods
      ? {
          [webhookPaths.mutateTaggedPod]: route<V1Pod>("mutate-tagged-pod", (request) =>
            admitTaggedPod(request, options.pods as PodAdmissionDeps),
          ),
        }
      : {}),
  };
}
