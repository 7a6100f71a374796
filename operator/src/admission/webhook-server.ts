// The HTTPS endpoint the API server calls for admission; every replica serves it.

import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { Logger } from "pino";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import type { OperatorMetrics } from "../metrics.ts";
import type { AdmissionRequest, AdmissionResponse, AdmissionReview } from "./admission-review.ts";
import { mutateRun, validateRun } from "./run-admission.ts";
import type { WebhookTlsMaterial } from "./webhook-certs.ts";
import { webhookPaths } from "./webhook-configurations.ts";

const maxBodyBytes = 3 * 1024 * 1024;

export interface WebhookServerOptions {
  tls: WebhookTlsMaterial;
  sidecarUid: number;
  logger: Logger;
  metrics: OperatorMetrics;
}

type Handler = (request: AdmissionRequest<LangGraphRun>) => AdmissionResponse;

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBodyBytes) throw new HttpError(413, `request body exceeds ${maxBodyBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parseRequest(body: string): AdmissionRequest<LangGraphRun> {
  let review: AdmissionReview<LangGraphRun>;
  try {
    review = JSON.parse(body) as AdmissionReview<LangGraphRun>;
  } catch {
    throw new HttpError(400, "body is not JSON");
  }
  if (review?.kind !== "AdmissionReview" || typeof review.request?.uid !== "string") {
    throw new HttpError(400, "body is not an admission.k8s.io/v1 AdmissionReview with a request");
  }
  return review.request;
}

export function createWebhookServer(options: WebhookServerOptions): Server {
  const { logger, metrics } = options;
  const handlers: Record<string, [string, Handler]> = {
    [webhookPaths.mutateRun]: ["mutate-run", mutateRun],
    [webhookPaths.validateRun]: [
      "validate-run",
      (request) => validateRun(request, options.sidecarUid),
    ],
  };

  const respond = (response: ServerResponse, status: number, body: unknown) => {
    response.writeHead(status, { "content-type": "application/json" });
    response.end(JSON.stringify(body));
  };

  const server = createServer(
    { cert: options.tls.certPem, key: options.tls.keyPem, minVersion: "TLSv1.2" },
    async (request, response) => {
      const path = new URL(request.url ?? "/", "https://operator").pathname;
      const route = handlers[path];
      try {
        if (!route) throw new HttpError(404, `no handler for ${path}`);
        if (request.method !== "POST") throw new HttpError(405, "admission reviews are POSTed");
        const [webhook, handle] = route;
        const admission = parseRequest(await readBody(request));
        const answer = handle(admission);
        metrics.webhookDecisions.inc({ webhook, decision: answer.allowed ? "allowed" : "denied" });
        if (!answer.allowed) {
          const { namespace, name, operation, userInfo } = admission;
          logger.info(
            {
              webhook,
              namespace,
              name,
              operation,
              user: userInfo.username,
              reason: answer.status?.message,
            },
            "admission denied",
          );
        }
        respond(response, 200, {
          apiVersion: "admission.k8s.io/v1",
          kind: "AdmissionReview",
          response: answer,
        });
      } catch (error) {
        const status = error instanceof HttpError ? error.status : 500;
        if (status === 500) logger.error({ err: error, path }, "admission webhook failed");
        respond(response, status, { error: (error as Error).message });
      }
    },
  );
  server.on("tlsClientError", (error) => logger.debug({ err: error }, "TLS handshake failed"));
  return server;
}
