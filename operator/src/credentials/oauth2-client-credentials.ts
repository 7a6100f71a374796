// OAuth 2.0 client-credentials tokens minted for one run (RFC 6749 §4.4) and revoked when the run
// ends before they expire (RFC 7009). The client secret goes only to an https endpoint whose
// certificate verifies, and never into an error message.
import * as oauth from "openid-client";
import { Agent, fetch as undiciFetch } from "undici";

/** How long a token or revocation request may take in all, connection and TLS included. */
export const defaultOAuth2TimeoutMs = 10_000;

/** RFC 6749 §2.3.1: servers must support Basic, so it is the default. */
export type ClientAuthMethod = "client_secret_basic" | "client_secret_post";

/** How the operator authenticates to the authorization server, as the Connection says. */
export interface OAuth2ClientOptions {
  clientId: string;
  clientSecret: string;
  /** PEM of the CA(s) that sign the server's certificate; the system trust store when absent. */
  caPem?: string;
  timeoutMs?: number;
  authMethod?: ClientAuthMethod;
}

export interface ClientCredentialsOptions extends OAuth2ClientOptions {
  tokenUrl: string;
  scopes: string[];
}

export interface RevocationOptions extends OAuth2ClientOptions {
  /** The server's RFC 7009 endpoint; without one a token cannot be revoked ("unsupported"). */
  revocationUrl?: string;
}

export interface ClientCredentialsToken {
  accessToken: string;
  /** Always "Bearer": openid-client refuses other types, and DPoP is never requested. */
  tokenType: string;
  /**
   * When the server says the token stops working, counted conservatively from before the
   * request was sent; undefined when it did not say (then only revocation ends it).
   */
  expiresAt: Date | undefined;
  /** The scopes granted: the server's `scope`, or the ones asked for when it omits it (§5.1). */
  scopes: string[];
}

/** What went wrong, for callers to branch on. */
export type OAuth2FailureKind =
  | "InvalidRequest"
  | "InsecureEndpoint"
  | "TlsVerification"
  | "Unreachable"
  | "Timeout"
  | "Rejected"
  | "ServerError"
  | "InvalidResponse";

/** A token or revocation request that failed; the message names the endpoint, never the secret. */
export class OAuth2TokenError extends Error {
  readonly kind: OAuth2FailureKind;
  /** The URL that was called (or refused): the token or the revocation endpoint. */
  readonly endpoint: string;
  /** The OAuth 2.0 error code the server answered (invalid_client, invalid_scope…). */
  readonly oauthError: string | undefined;
  readonly status: number | undefined;
  /** True when the same request may succeed later (timeouts, connection failures, 5xx). */
  readonly retryable: boolean;

  constructor(
    message: string,
    details: {
      kind: OAuth2FailureKind;
      endpoint: string;
      oauthError?: string;
      status?: number;
      cause?: unknown;
    },
  ) {
    super(message, { cause: details.cause });
    this.name = "OAuth2TokenError";
    this.kind = details.kind;
    this.endpoint = details.endpoint;
    this.oauthError = details.oauthError;
    this.status = details.status;
    this.retryable =
      details.kind === "Unreachable" ||
      details.kind === "Timeout" ||
      details.kind === "ServerError" ||
      details.oauthError === "temporarily_unavailable";
  }
}

/** Mints a token with the client-credentials grant. Throws OAuth2TokenError. */
export async function mintClientCredentialsToken(
  options: ClientCredentialsOptions,
): Promise<ClientCredentialsToken> {
  const request: Call = { ...options, endpoint: options.tokenUrl, role: "token endpoint" };
  const invalidScope = options.scopes.find((scope) => !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(scope));
  if (invalidScope !== undefined) {
    throw new OAuth2TokenError(
      `scope ${JSON.stringify(invalidScope)} for token endpoint ${options.tokenUrl} is not a ` +
        "valid OAuth 2.0 scope token (RFC 6749 §3.3: printable ASCII, no spaces, quotes or \\)",
      { kind: "InvalidRequest", endpoint: options.tokenUrl },
    );
  }
  // expires_in counts from when the server answered: whole seconds from before the request
  // never end later than the server's own expiry, which it too keeps in whole seconds.
  const requestedAtSeconds = Math.floor(Date.now() / 1000);
  const response = await withClient(request, (config) =>
    oauth.clientCredentialsGrant(
      config,
      options.scopes.length > 0 ? { scope: options.scopes.join(" ") } : {},
    ),
  );
  return {
    accessToken: response.access_token,
    tokenType: "Bearer",
    expiresAt:
      response.expires_in === undefined
        ? undefined
        : new Date((requestedAtSeconds + response.expires_in) * 1000),
    scopes: response.scope === undefined ? [...options.scopes] : response.scope.split(" "),
  };
}

/**
 * Revokes a token (RFC 7009). "unsupported" when no revocation endpoint is known or the server
 * answers unsupported_token_type: the token then lives until it expires. Throws OAuth2TokenError.
 */
export async function revokeToken(
  options: RevocationOptions,
  token: string,
): Promise<"revoked" | "unsupported"> {
  const { revocationUrl } = options;
  if (revocationUrl === undefined) return "unsupported";
  try {
    await withClient(
      { ...options, endpoint: revocationUrl, role: "revocation endpoint" },
      (config) => oauth.tokenRevocation(config, token, { token_type_hint: "access_token" }),
    );
    return "revoked";
  } catch (error) {
    if (error instanceof OAuth2TokenError && error.oauthError === "unsupported_token_type") {
      return "unsupported";
    }
    throw error;
  }
}

/** The expiry to hand out with a run's credential: the token's own, never past the deadline. */
export function expiryWithinRun(token: ClientCredentialsToken, deadline: Date): Date {
  const expiresAt = token.expiresAt;
  return expiresAt !== undefined && expiresAt < deadline ? expiresAt : deadline;
}

/** Whether the token still works after the run ended at endedAt, so it must be revoked then. */
export function outlivesRun(token: ClientCredentialsToken, endedAt: Date): boolean {
  return token.expiresAt === undefined || token.expiresAt > endedAt;
}

interface Call extends OAuth2ClientOptions {
  endpoint: string;
  role: "token endpoint" | "revocation endpoint";
}

async function withClient<T>(
  request: Call,
  call: (config: oauth.Configuration) => Promise<T>,
): Promise<T> {
  const { endpoint, role, clientId, clientSecret } = request;
  const timeoutMs = request.timeoutMs ?? defaultOAuth2TimeoutMs;
  const url = parseEndpoint(request);
  if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, got ${timeoutMs}`);

  // Only the given CA is trusted when there is one: a public CA must not vouch for this server.
  const dispatcher = new Agent(
    request.caPem === undefined ? {} : { connect: { ca: request.caPem } },
  );
  const config = new oauth.Configuration(
    {
      // Tokens from this grant carry no ID token, so the issuer is never checked; the token
      // URL's origin stands in for it and saves a discovery round trip.
      issuer: url.origin,
      token_endpoint: role === "token endpoint" ? endpoint : undefined,
      revocation_endpoint: role === "revocation endpoint" ? endpoint : undefined,
    },
    clientId,
    undefined,
    request.authMethod === "client_secret_post"
      ? oauth.ClientSecretPost(clientSecret)
      : oauth.ClientSecretBasic(clientSecret),
  );
  config.timeout = timeoutMs / 1000;
  config[oauth.customFetch] = (input, init) =>
    undiciFetch(input, { ...init, dispatcher } as Parameters<typeof undiciFetch>[1]) as never;
  try {
    return await call(config);
  } catch (error) {
    throw describeFailure(error, { ...request, timeoutMs });
  } finally {
    // One agent per call: nothing outlives it, so no socket keeps the process or the server up.
    await dispatcher.destroy();
  }
}

function parseEndpoint({ endpoint, role, clientId }: Call): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new OAuth2TokenError(`${role} ${JSON.stringify(endpoint)} is not a URL`, {
      kind: "InvalidRequest",
      endpoint,
    });
  }
  if (url.protocol !== "https:") {
    throw new OAuth2TokenError(
      `${role} ${endpoint} is not https: client "${clientId}"'s secret must not travel in clear`,
      { kind: "InsecureEndpoint", endpoint },
    );
  }
  if (url.username !== "" || url.password !== "") {
    throw new OAuth2TokenError(
      `${role} ${url.origin}${url.pathname} carries credentials in its URL: give them as the ` +
        "client id and secret instead",
      { kind: "InsecureEndpoint", endpoint: `${url.origin}${url.pathname}` },
    );
  }
  return url;
}

// Certificate-verification codes of Node/OpenSSL; connection failures use errno codes instead.
const tlsErrorCode =
  /^(ERR_TLS_|ERR_SSL_)|CERT|^UNABLE_TO_|^INVALID_CA$|^PATH_LENGTH_EXCEEDED$|^INVALID_PURPOSE$|^HOSTNAME_MISMATCH$/;

function describeFailure(error: unknown, request: Call & { timeoutMs: number }): OAuth2TokenError {
  const { endpoint, role, clientId, clientSecret } = request;
  const redact = (text: string) =>
    clientSecret === "" ? text : text.replaceAll(clientSecret, "[redacted]");
  const fail = (
    message: string,
    details: Omit<ConstructorParameters<typeof OAuth2TokenError>[1], "endpoint">,
  ) => new OAuth2TokenError(redact(message), { ...details, endpoint, cause: error });

  if (error instanceof oauth.ResponseBodyError) {
    const description = error.error_description ? `: ${error.error_description}` : "";
    return fail(
      `${role} ${endpoint} refused client "${clientId}": ${error.error} (HTTP ${error.status})${description}`,
      {
        kind: error.status >= 500 ? "ServerError" : "Rejected",
        oauthError: error.error,
        status: error.status,
      },
    );
  }
  if (error instanceof oauth.WWWAuthenticateChallengeError) {
    const parameters = error.cause[0]?.parameters;
    const code = parameters?.error;
    const description = parameters?.error_description ? `: ${parameters.error_description}` : "";
    return fail(
      `${role} ${endpoint} refused client "${clientId}": ${code ?? "authentication challenge"} ` +
        `(HTTP ${error.status})${description}`,
      { kind: "Rejected", oauthError: code, status: error.status },
    );
  }
  if (error instanceof oauth.ClientError) {
    if (error.code === "OAUTH_TIMEOUT") {
      return fail(`${role} ${endpoint} did not answer within ${request.timeoutMs} ms`, {
        kind: "Timeout",
      });
    }
    // The cause of a bad response is undici's Response, not the global one: read its status.
    const status = (error.cause as { status?: unknown } | undefined)?.status;
    if (typeof status === "number" && (status < 200 || status > 299)) {
      return fail(
        `${role} ${endpoint} answered HTTP ${status} without an OAuth 2.0 error (${error.message})`,
        { kind: status >= 500 ? "ServerError" : "Rejected", status },
      );
    }
    return fail(`${role} ${endpoint} answered unexpectedly: ${error.message}`, {
      kind: "InvalidResponse",
    });
  }
  const network = rootCause(error);
  if (network.code !== undefined && tlsErrorCode.test(network.code)) {
    const hint =
      request.caPem === undefined
        ? "no CA was given for it and the system trust store does not trust its certificate " +
          "(set the Connection's caSecretRef)"
        : "the CA given for it does not vouch for its certificate";
    return fail(
      // Node's own advice after the ";" (--use-system-ca) is not what an operator can act on.
      `TLS verification of ${role} ${endpoint} failed: ${network.message.split(";")[0]} ` +
        `(${network.code}); ${hint}`,
      { kind: "TlsVerification" },
    );
  }
  return fail(
    `${role} ${endpoint} is unreachable: ${network.message}${network.code ? ` (${network.code})` : ""}`,
    { kind: "Unreachable" },
  );
}

function rootCause(error: unknown): { message: string; code: string | undefined } {
  let current = error;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  if (!(current instanceof Error)) return { message: String(current), code: undefined };
  const code = (current as NodeJS.ErrnoException).code;
  return { message: current.message, code: typeof code === "string" ? code : undefined };
}
