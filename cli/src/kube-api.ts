// Requests to the API server as the kubeconfig's user: whatever kubectl would authenticate
// with (client certificates, tokens, exec plugins), through @kubernetes/client-node.
import { request as httpRequest } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { KubeConfig } from "@kubernetes/client-node";

export interface KubeTarget {
  kubeconfig?: string;
  context?: string;
}

/** A refusal from the API server, with the reason and message of its Status. */
export class ApiError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string, message: string) {
    super(message);
    this.code = code;
    this.reason = reason;
  }
}

export function loadKubeConfig(target: KubeTarget): KubeConfig {
  const kc = new KubeConfig();
  if (target.kubeconfig) kc.loadFromFile(target.kubeconfig);
  else kc.loadFromDefault();
  if (target.context) {
    if (!kc.getContextObject(target.context)) {
      throw new Error(`the kubeconfig has no context "${target.context}"`);
    }
    kc.setCurrentContext(target.context);
  }
  if (!kc.getCurrentCluster()) throw new Error("the kubeconfig names no current cluster");
  return kc;
}

/** The namespace of the kubeconfig's current context, as kubectl picks it. */
export function contextNamespace(kc: KubeConfig): string {
  return kc.getContextObject(kc.getCurrentContext())?.namespace || "default";
}

export function getJson<T>(kc: KubeConfig, path: string): Promise<T> {
  return requestJson<T>(kc, "GET", path);
}

/** A JSON request to the API server as the kubeconfig's user; a refusal throws ApiError. */
export async function requestJson<T>(
  kc: KubeConfig,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<T> {
  const server = kc.getCurrentCluster()?.server ?? "";
  const url = new URL(path, server);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const options: RequestOptions = {
    method,
    headers: {
      accept: "application/json",
      ...(payload ? { "content-type": "application/json" } : {}),
    },
  };
  await kc.applyToHTTPSOptions(options);
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  const { status, body: answer } = await new Promise<{ status: number; body: string }>(
    (resolve, reject) => {
      const req = send(url, options, (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        response.on("error", reject);
      });
      req.on("error", (error) => reject(new Error(`${url.origin}: ${error.message}`)));
      req.end(payload);
    },
  );
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer);
  } catch {
    throw new ApiError(
      status,
      "InvalidResponse",
      `${path} answered ${status}: ${answer.slice(0, 200)}`,
    );
  }
  if (status >= 200 && status < 300) return parsed as T;
  const failure = parsed as { reason?: string; message?: string };
  throw new ApiError(status, failure.reason ?? "Unknown", failure.message ?? `HTTP ${status}`);
}
