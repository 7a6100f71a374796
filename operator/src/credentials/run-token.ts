// Verifies a run JWT the operator issued: signature by a key still in the JWKS, ES256 only,
// the operator's issuer and the sidecar audience, not expired.
import { createLocalJWKSet, type JSONWebKeySet, type JWTPayload, jwtVerify } from "jose";
import { type RunClaims, runTokenAlgorithms, runTokenAudience } from "../../../api/credentials.ts";
import { HttpError } from "../https-server.ts";

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
        `the run token is not valid: ${(error as Error).message}`,
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

/** The token of an `authorization: Bearer <token>` header. */
export function bearerToken(header: string | undefined): string {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (!match?.[1]) {
    throw new HttpError(401, "Unauthenticated", "expected an authorization: Bearer <token> header");
  }
  return match[1];
}
