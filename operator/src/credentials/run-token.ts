// Verifies a run JWT the operator issued: signature by a key still in the JWKS, ES256 only,
// the operator's issuer and the sidecar audience, not expired.
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTPayload, jwtVerify } from "jose";
import { type RunClaims, runTokenAlgorithms, runTokenAudience } from "../../../api/credentials.ts";
import { errorMessage } from "../../../api/errors.ts";
import { HttpError } from "../server/https-server.ts";

export type VerifiedRunToken = JWTPayload & RunClaims & { sub: string; jti: string };

/** A verifier over a key set; build a new one when the key set changes. */
export function runTokenVerifier(jwks: JSONWebKeySet, issuer: string) {
  const keys = createLocalJWKSet(jwks);
  /** clockToleranceSeconds: how long past its exp the token still verifies (0: not at all). */
  return async (token: string, clockToleranceSeconds = 0): Promise<VerifiedRunToken> => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        clockTolerance: clockToleranceSeconds,
        algorithms: [...runTokenAlgorithms],
        issuer,
        audience: runTokenAudience,
        requiredClaims: ["sub", "jti", "exp"],
      }));
    } catch (error) {
      throw new HttpError(
        401,
        "TokenInvalid",
        `the run token is not valid: ${errorMessage(error)}`,
        { cause: error },
      );
    }
    const claims = payload as Partial<VerifiedRunToken>;
    if (claims.run?.uid !== claims.sub || typeof claims.run?.name !== "string") {
      throw new HttpError(
        401,
        "TokenInvalid",
        "the run token's run claim does not match its subject",
      );
    }
    return claims as VerifiedRunToken;
  };
}

const keyRefreshIntervalMs = 5_000;

export interface RunTokenKeys {
  jwks(): JSONWebKeySet;
  /**
   * Re-reads the shared signing keys (rotating them if due, as the periodic refresh would): a
   * token may carry a key another replica just made.
   */
  refreshKeys(): Promise<void>;
  /** The run JWT's iss. */
  issuerUrl: string;
}

/** A verifier that follows key rotation: rebuilt when the key set changes, and refreshed (at most every 5 s) for a token signed by a key it has not seen. */
export function followingVerifier(keys: RunTokenKeys) {
  let verifier: { kids: string; verify: ReturnType<typeof runTokenVerifier> };
  let refreshedAt = 0;
  const verifyOnce = (token: string, toleranceSeconds: number) => {
    const jwks = keys.jwks();
    const kids = jwks.keys.map((k) => k.kid).join();
    if (verifier?.kids !== kids)
      verifier = { kids, verify: runTokenVerifier(jwks, keys.issuerUrl) };
    return verifier.verify(token, toleranceSeconds);
  };
  return async (token: string, toleranceSeconds = 0): Promise<VerifiedRunToken> => {
    try {
      return await verifyOnce(token, toleranceSeconds);
    } catch (error) {
      const unknownKey =
        (error as Error).cause instanceof errors.JWKSNoMatchingKey &&
        Date.now() - refreshedAt > keyRefreshIntervalMs;
      if (!unknownKey) throw error;
      refreshedAt = Date.now();
      await keys.refreshKeys();
      return verifyOnce(token, toleranceSeconds);
    }
  };
}

export type RunTokenVerify = ReturnType<typeof followingVerifier>;

/** The token of an `authorization: Bearer <token>` header. */
export function bearerToken(header: string | undefined): string {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (!match?.[1]) {
    throw new HttpError(401, "Unauthenticated", "expected an authorization: Bearer <token> header");
  }
  return match[1];
}
