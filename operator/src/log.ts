// One pino logger per process. API errors are logged as their status and the server's
// message, not as the client's multi-kilobyte dump of headers and body.
import { ApiException } from "@kubernetes/client-node";
import { pino, stdSerializers } from "pino";

export function apiErrorMessage(error: unknown): string {
  if (!(error instanceof ApiException))
    return error instanceof Error ? error.message : String(error);
  try {
    const status = (typeof error.body === "string" ? JSON.parse(error.body) : error.body) as {
      message?: string;
    };
    return `HTTP ${error.code}: ${status?.message ?? "no message"}`;
  } catch {
    return `HTTP ${error.code}: ${String(error.body).slice(0, 500)}`;
  }
}

function serializeError(error: unknown) {
  if (error instanceof ApiException)
    return { type: "ApiException", code: error.code, message: apiErrorMessage(error) };
  return error instanceof Error ? stdSerializers.err(error) : error;
}

export function createLogger(level: string, bindings: Record<string, string>) {
  return pino({ level, base: bindings, serializers: { err: serializeError } });
}
