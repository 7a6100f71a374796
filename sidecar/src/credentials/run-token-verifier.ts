// Checks a credential bundle before the sidecar may use it: the run JWT's signature against
// the operator's JWKS, its registered claims, and that it names this run and this pod.

import type { JWK, JWTPayload, JWTVerifyGetKey } from "jose";
import { JOSEError, JWKSNoMatchingKey } from "jose/errors";
import { createLocalJWKSet } from "jose/jwks/local";
import { jwtVerify } from "jose/jwt/verify";
import type { CredentialBundle, RunClaims, UpstreamCredential } from "../../../api/credentials.ts";
import { runTokenAlgorithms, runTokenAudience } from "../../../api/credentials.ts";
import type { OperatorClient } from "./operator-client.ts";

/** The verified run JWT's claims: registered and private. */
export type RunTokenClaims = JWTPayload &
  RunClaims & { iss: string; sub: string; exp: number; jti: string };

/** A bundle that passed every check: the only kind the sidecar ever holds. */
export interface VerifiedCredential {
  /** The run JWT, presented to the operator's status endpoint. */
  token: string;
  claims: RunTokenClaims;
  /** The signing key's kid. */
  kid: string;
  /** Upstream credentials by connection name. */
  credentials: Record<string, UpstreamCredential>;
  /** The earlier of the bundle's expiresAt and the JWT's exp: unusable from then on. */
  expiresAt: Date;
}

/** A bundle the sidecar refuses to use; `check` names the failed check. */
export class BundleRejectedError extends Error {
  override name = "BundleRejectedError";
  readonly check: string;

  constructor(check: string, message: string, options?: { cause: unknown }) {
    super(message, options);
    this.check = check;
  }
}

/** Who this sidecar is: a bundle must name exactly this run and (when known) this pod. */
export interface SidecarIdentity {
  run: string;
  /**
   * The run's uid; a tagged pod's sidecar is not told it (its run is made after the pod) and
   * takes it from the first bundle it verifies, then holds every later one to it.
   */
  runUid: string | undefined;
  namespace: string | undefined;
  podName: string | undefined;
  podUid: string | undefined;
}

export interface RunTokenVerifierOptions {
  operator: OperatorClient;
  /** The operator URL exactly as the operator signs it into `iss`. */
  issuer: string;
  identity: SidecarIdentity;
  /** A key set older than this is fetched again before verifying a new bundle. */
  jwksMaxAgeMs?: number;
  /** At most one extra fetch for an unknown kid per this interval. */
  jwksRefetchCooldownMs?: number;
  now?: () => number;
}

type KeyLookup = ReturnType<typeof createLocalJWKSet>;

export class RunTokenVerifier {
  readonly #options: RunTokenVerifierOptions;
  readonly #jwksMaxAgeMs: number;
  readonly #cooldownMs: number;
  readonly #now: () => number;
  #keys: KeyLookup | undefined;
  #fetchedAt = Number.NEGATIVE_INFINITY;
  #refetchedForKidAt = Number.NEGATIVE_INFINITY;
  #runUid: string | undefined;

  constructor(options: RunTokenVerifierOptions) {
    this.#options = options;
    this.#jwksMaxAgeMs = options.jwksMaxAgeMs ?? 30_000;
    this.#cooldownMs = options.jwksRefetchCooldownMs ?? 10_000;
    this.#now = options.now ?? Date.now;
    this.#runUid = options.identity.runUid;
  }

  /**
   * Verifies an issuance answer. Throws BundleRejectedError for a bundle that must not be used,
   * and the OperatorClient's error when the key set cannot be fetched.
   */
  async verify(answer: unknown, signal?: AbortSignal): Promise<VerifiedCredential> {
    const bundle = parseBundle(answer);
    if (this.#keys === undefined || this.#now() - this.#fetchedAt >= this.#jwksMaxAgeMs) {
      await this.#fetchKeys(signal);
    }
    const { identity, issuer } = this.#options;
    let verified: Awaited<ReturnType<typeof jwtVerify>>;
    try {
      verified = await jwtVerify(bundle.token, this.#keyFor(signal), {
        algorithms: [...runTokenAlgorithms],
        issuer,
        audience: runTokenAudience,
        ...(this.#runUid ? { subject: this.#runUid } : {}),
        requiredClaims: ["exp", "iat", "jti"],
        currentDate: new Date(this.#now()),
      });
    } catch (error) {
      if (!(error instanceof JOSEError)) throw error;
      throw new BundleRejectedError(error.code, `run JWT refused: ${error.message}`, {
        cause: error,
      });
    }
    const claims = checkClaims(verified.payload, identity);
    this.#runUid ??= claims.run.uid;
    const expiresAt = Math.min(Date.parse(bundle.expiresAt), claims.exp * 1000);
    if (expiresAt <= this.#now()) {
      throw new BundleRejectedError(
        "expiresAt",
        `bundle expired at ${new Date(expiresAt).toISOString()}`,
      );
    }
    return {
      token: bundle.token,
      claims,
      kid: verified.protectedHeader.kid ?? "",
      credentials: bundle.credentials,
      expiresAt: new Date(expiresAt),
    };
  }

  async #fetchKeys(signal: AbortSignal | undefined): Promise<void> {
    const jwks = await this.#options.operator.jwks(signal);
    try {
      this.#keys = createLocalJWKSet(jwks as { keys: JWK[] });
    } catch (error) {
      throw new BundleRejectedError(
        "jwks",
        `the operator's key set is malformed: ${error instanceof Error ? error.message : error}`,
      );
    }
    this.#fetchedAt = this.#now();
  }

  #keyFor(signal: AbortSignal | undefined): JWTVerifyGetKey {
    return async (header, token) => {
      // Every run JWT names its key; without a kid a rotated-out key could be matched by alg.
      if (typeof header.kid !== "string" || header.kid === "") {
        throw new BundleRejectedError("kid", "run JWT refused: its header has no kid");
      }
      const keys = this.#keys as KeyLookup;
      try {
        return await keys(header, token);
      } catch (error) {
        // A key published after the last fetch (rotation): fetch once more, not on every miss.
        if (!(error instanceof JWKSNoMatchingKey)) throw error;
        if (this.#now() - this.#refetchedForKidAt < this.#cooldownMs) throw error;
        this.#refetchedForKidAt = this.#now();
        await this.#fetchKeys(signal);
        return (this.#keys as KeyLookup)(header, token);
      }
    };
  }
}

function parseBundle(answer: unknown): CredentialBundle {
  if (typeof answer !== "object" || answer === null) {
    throw new BundleRejectedError("bundle", "the issuance answer is not a JSON object");
  }
  const { token, expiresAt, credentials } = answer as Record<string, unknown>;
  if (typeof token !== "string" || token === "") {
    throw new BundleRejectedError("bundle", "the bundle has no token");
  }
  if (typeof expiresAt !== "string" || Number.isNaN(Date.parse(expiresAt))) {
    throw new BundleRejectedError("bundle", "the bundle's expiresAt is not an RFC 3339 time");
  }
  if (typeof credentials !== "object" || credentials === null || Array.isArray(credentials)) {
    throw new BundleRejectedError("bundle", "the bundle's credentials is not an object");
  }
  for (const [connection, credential] of Object.entries(credentials)) {
    const type = (credential as { type?: unknown } | null)?.type;
    if (type !== "postgres" && type !== "http") {
      throw new BundleRejectedError(
        "bundle",
        `the bundle's credential for connection "${connection}" has no type postgres or http`,
      );
    }
  }
  return { token, expiresAt, credentials: credentials as CredentialBundle["credentials"] };
}

function checkClaims(payload: JWTPayload, identity: SidecarIdentity): RunTokenClaims {
  const { run, pod, grants } = payload as Partial<RunClaims>;
  const expect = (claim: string, actual: unknown, expected: string | undefined) => {
    if (expected !== undefined && actual !== expected) {
      throw new BundleRejectedError(
        claim,
        `run JWT refused: claim ${claim} is ${JSON.stringify(actual)}, this sidecar's is "${expected}"`,
      );
    }
  };
  if (typeof run !== "object" || run === null || typeof pod !== "object" || pod === null) {
    throw new BundleRejectedError("claims", "run JWT refused: it has no run or pod claim");
  }
  if (!Array.isArray(grants)) {
    throw new BundleRejectedError("grants", "run JWT refused: its grants claim is not a list");
  }
  expect("run.uid", run.uid, payload.sub);
  expect("run.name", run.name, identity.run);
  expect("run.namespace", run.namespace, identity.namespace);
  expect("pod.uid", pod.uid, identity.podUid);
  expect("pod.name", pod.name, identity.podName);
  return payload as RunTokenClaims;
}
