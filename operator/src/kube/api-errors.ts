// What callers branch on when a Kubernetes API call fails, and a readable message for logs
// (the client's own message is a multi-kilobyte dump of headers and body).
import { ApiException } from "@kubernetes/client-node";
import { errorMessage } from "../../../api/errors.ts";

/** The HTTP status of a failed API call, or undefined when it did not reach the API. */
export function statusOf(error: unknown): number | undefined {
  return error instanceof ApiException ? error.code : undefined;
}

export const isNotFound = (error: unknown): boolean => statusOf(error) === 404;
export const isConflict = (error: unknown): boolean => statusOf(error) === 409;

/** Runs call and answers undefined when the object is not there. */
export async function unlessNotFound<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

export function apiErrorMessage(error: unknown): string {
  if (!(error instanceof ApiException)) return errorMessage(error);
  try {
    const status = (typeof error.body === "string" ? JSON.parse(error.body) : error.body) as {
      message?: string;
    };
    return `HTTP ${error.code}: ${status?.message ?? "no message"}`;
  } catch {
    return `HTTP ${error.code}: ${String(error.body).slice(0, 500)}`;
  }
}
