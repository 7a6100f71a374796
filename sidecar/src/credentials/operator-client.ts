// The sidecar's HTTPS client for the operator's credential API: one keep-alive undici Agent
// that trusts only the operator's CA, bounded timeouts and bodies, and errors typed by what
// the caller should do next (retry soon, retry slowly, give up).
import { Agent, type Dispatcher } from "undici";
import {
  type CredentialApiError,
  credentialApi,
  type HoldRequest,
} from "../../../api/credentials.ts";
import { errorMessage } from "../../../api/errors.ts";
import type { SessionEvent, SessionEventsBatch } from "../../../api/session-events.ts";

/**
 * unreachable: no HTTP answer (connection, TLS, timeout); server: 5xx; refused: 4xx, with the
 * CredentialApiError reason when the body has one; malformed: an answer that is not the API's.
 */
export type OperatorFailure = "unreachable" | "server" | "refused" | "malformed";

export class OperatorRequestError extends Error {
  override name = "OperatorRequestError";
  readonly kind: OperatorFailure;
  readonly status: number | undefined;
  /** The CredentialApiError reason of a 4xx/5xx answer. */
  readonly reason: string | undefined;
  /** The system or TLS error code when the operator was not reached (e.g. ECONNREFUSED). */
  readonly code: string | undefined;

  constructor(
    kind: OperatorFailure,
    message: string,
    details: { status?: number; reason?: string; code?: string; cause?: unknown } = {},
  ) {
    super(message, { cause: details.cause });
    this.kind = kind;
    this.status = details.status;
    this.reason = details.reason;
    this.code = details.code;
  }
}

export interface OperatorClientOptions {
  /** https base URL, without a trailing slash. */
  baseUrl: string;
  /** PEM of the CA(s) the operator's certificate chains to. */
  ca: string;
  connectTimeoutMs?: number;
  /** How long a request (other than a status long-poll's wait) may take to answer. */
  requestTimeoutMs?: number;
}

// Bundles and key sets are a few KiB; anything far larger is not the credential API.
const maxBodyBytes = 1024 * 1024;

export class OperatorClient {
  readonly #origin: string;
  readonly #basePath: string;
  readonly #agent: Agent;
  readonly #requestTimeoutMs: number;

  constructor(options: OperatorClientOptions) {
    const url = new URL(options.baseUrl);
    this.#origin = url.origin;
    this.#basePath = url.pathname.replace(/\/+$/, "");
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.#agent = new Agent({
      // Replaces Node's default CA list: only the operator's CA is trusted.
      connect: { ca: options.ca, timeout: options.connectTimeoutMs ?? 5_000 },
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 60_000,
      // A held status long-poll must not queue the issuance and JWKS requests behind it.
      connections: 4,
    });
  }

  /** POST credentialApi.issue with the pod's projected token: the raw CredentialBundle JSON. */
  issue(podToken: string, signal?: AbortSignal): Promise<unknown> {
    return this.#call("POST", credentialApi.issue, podToken, this.#requestTimeoutMs, signal);
  }

  /** GET credentialApi.jwks: the raw JSON Web Key Set. */
  jwks(signal?: AbortSignal): Promise<unknown> {
    return this.#call("GET", credentialApi.jwks, undefined, this.#requestTimeoutMs, signal);
  }

  /** GET credentialApi.status, held by the operator up to waitSeconds: the raw RunTokenStatus. */
  status(runToken: string, waitSeconds: number, signal?: AbortSignal): Promise<unknown> {
    const path = `${credentialApi.status}?waitSeconds=${waitSeconds}`;
    return this.#call("GET", path, runToken, waitSeconds * 1000 + this.#requestTimeoutMs, signal);
  }

  /** POST credentialApi.holds with the run JWT: the raw HoldState of the new held command. */
  hold(runToken: string, request: HoldRequest, signal?: AbortSignal): Promise<unknown> {
    const body = JSON.stringify(request);
    return this.#call("POST", credentialApi.holds, runToken, this.#requestTimeoutMs, signal, body);
  }

  /** GET credentialApi.holdState, held by the operator up to waitSeconds: the raw HoldState. */
  holdState(
    runToken: string,
    name: string,
    waitSeconds: number,
    signal?: AbortSignal,
  ): Promise<unknown> {
    const path = `${credentialApi.holdState}?name=${encodeURIComponent(name)}&waitSeconds=${waitSeconds}`;
    return this.#call("GET", path, runToken, waitSeconds * 1000 + this.#requestTimeoutMs, signal);
  }

  /** POST credentialApi.events with the run JWT: the raw SessionEventsAck. */
  postEvents(runToken: string, events: SessionEvent[], signal?: AbortSignal): Promise<unknown> {
    const body = JSON.stringify({ events } satisfies SessionEventsBatch);
    return this.#call("POST", credentialApi.events, runToken, this.#requestTimeoutMs, signal, body);
  }

  /** Drops every connection at once; in-flight requests fail. */
  close(): Promise<void> {
    return this.#agent.destroy();
  }

  async #call(
    method: "GET" | "POST",
    path: string,
    bearer: string | undefined,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    json?: string,
  ): Promise<unknown> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (json !== undefined) headers["content-type"] = "application/json";
    if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`;
    const target = `${method} ${this.#origin}${this.#basePath}${path}`;
    let response: Dispatcher.ResponseData;
    try {
      response = await this.#agent.request({
        origin: this.#origin,
        path: this.#basePath + path,
        method,
        headers,
        signal: signal ?? null,
        ...(json !== undefined ? { body: json } : {}),
        headersTimeout: timeoutMs,
        bodyTimeout: this.#requestTimeoutMs,
      });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      const code = errorCode(error);
      throw new OperatorRequestError(
        "unreachable",
        `${target} failed: ${code ? `${code}: ` : ""}${errorMessage(error)}`,
        { code, cause: error },
      );
    }
    const { statusCode } = response;
    const text = await readBody(response.body, target);
    let body: unknown;
    try {
      body = text === "" ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (statusCode >= 200 && statusCode < 300) {
      if (body === undefined) {
        throw new OperatorRequestError(
          "malformed",
          `${target} answered ${statusCode} without JSON`,
          {
            status: statusCode,
          },
        );
      }
      return body;
    }
    const apiError = asApiError(body);
    const detail = apiError
      ? `${apiError.reason}: ${apiError.error}`
      : "no CredentialApiError body";
    const kind: OperatorFailure =
      statusCode >= 500 ? "server" : statusCode >= 400 ? "refused" : "malformed";
    throw new OperatorRequestError(kind, `${target} answered ${statusCode} (${detail})`, {
      status: statusCode,
      ...(apiError ? { reason: apiError.reason } : {}),
    });
  }
}

async function readBody(body: Dispatcher.ResponseData["body"], target: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += chunk.length;
      if (size > maxBodyBytes) {
        body.destroy();
        throw new OperatorRequestError(
          "malformed",
          `${target} answered with more than ${maxBodyBytes} bytes`,
        );
      }
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof OperatorRequestError) throw error;
    throw new OperatorRequestError("unreachable", `${target}: ${errorMessage(error)}`, {
      code: errorCode(error),
      cause: error,
    });
  }
  return Buffer.concat(chunks).toString("utf8");
}

function asApiError(body: unknown): CredentialApiError | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const { error, reason } = body as Record<string, unknown>;
  return typeof error === "string" && typeof reason === "string"
    ? ({ error, reason } as CredentialApiError)
    : undefined;
}

function errorCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
