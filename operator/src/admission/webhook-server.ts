// The admission routes the API server calls; served on the operator's HTTPS server.
import type { Logger } from "pino";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { HttpError, type Route, readBody } from "../https-server.ts";
import type { OperatorMetrics } from "../metrics.ts";
import type { AdmissionRequest, AdmissionResponse, AdmissionReview } from "./admission-review.ts";
import { mutateRun, validateRun } from "./run-admission.ts";
import { webhookPaths } from "./webhook-configurations.ts";

const maxBodyBytes = 3 * 1024 * 1024;

export interface AdmissionRoutesOptions {
  sidecarUid: number;
  logger: Logger;
  metrics: OperatorMetrics;
}

type Handler = (request: AdmissionRequest<LangGraphRun>) => AdmissionResponse;

function parseRequest(body: string): AdmissionRequest<LangGraphRun> {
  let review: AdmissionReview<LangGraphRun>;
  try {
    review = JSON.parse(body) as AdmissionReview<LangGraphRun>;
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
  const route = (webhook: string, handle: Handler): Route => ({
    method: "POST",
    async handle(request) {
      const admission = parseRequest(await readBody(request, maxBodyBytes));
      const answer = handle(admission);
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
    [webhookPaths.mutateRun]: route("mutate-run", mutateRun),
    [webhookPaths.validateRun]: route("validate-run", (request) =>
      validateRun(request, options.sidecarUid),
    ),
  };
}
