// One pino logger per process. API errors are logged as their status and the server's
// message, not as the client's dump of headers and body.
import { ApiException } from "@kubernetes/client-node";
import { pino, stdSerializers } from "pino";
import { apiErrorMessage } from "./kube/api-errors.ts";

function serializeError(error: unknown) {
  if (error instanceof ApiException)
    return { type: "ApiException", code: error.code, message: apiErrorMessage(error) };
  return error instanceof Error ? stdSerializers.err(error) : error;
}

export function createLogger(level: string, bindings: Record<string, string>) {
  return pino({ level, base: bindings, serializers: { err: serializeError } });
}
