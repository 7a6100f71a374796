// Authenticates a sidecar's projected service-account token with a TokenReview and names the
// pod it is bound to. Successful reviews are cached briefly, never past the token's expiry.
import { createHash } from "node:crypto";
import type { AuthenticationV1Api } from "@kubernetes/client-node";
import { decodeJwt } from "jose";
import { BoundedCache } from "../../../api/bounded-cache.ts";
import { podTokenAudience } from "../../../api/credentials.ts";
import { apiErrorMessage } from "../kube/api-errors.ts";
import { HttpError } from "../server/https-server.ts";

const podNameExtra = "authentication.kubernetes.io/pod-name";
const podUidExtra = "authentication.kubernetes.io/pod-uid";
const serviceAccountPrefix = "system:serviceaccount:";

/** The pod a token was issued for, as the API server vouches. */
export interface PodIdentity {
  namespace: string;
  serviceAccount: string;
  podName: string;
  podUid: string;
}

export interface PodTokenReviewerOptions {
  api: Pick<AuthenticationV1Api, "createTokenReview">;
  /** How long a successful review is reused. Defaults to 5 s. */
  cacheTtlMs?: number;
  /** Reviews kept at most, bounding memory; the least recently used go first. Default 10,000. */
  cacheSize?: number;
  onReview?: (seconds: number, cached: boolean) => void;
  now?: () => number;
}

export class PodTokenReviewer {
  readonly #api: PodTokenReviewerOptions["api"];
  readonly #ttlMs: number;
  // Wall-clock time: a cached review ends no later than the token's exp.
  readonly #now: () => number;
  readonly #onReview: (seconds: number, cached: boolean) => void;
  /** Pod identities by the token's SHA-256. */
  readonly #cache: BoundedCache<string, PodIdentity>;

  constructor(options: PodTokenReviewerOptions) {
    this.#api = options.api;
    this.#ttlMs = options.cacheTtlMs ?? 5_000;
    this.#now = options.now ?? Date.now;
    this.#onReview = options.onReview ?? (() => {});
    // Each review is kept for its own time: the ttl, cut short by the token's expiry.
    this.#cache = new BoundedCache({ maxEntries: options.cacheSize ?? 10_000, now: this.#now });
  }

  /** The token's pod, or an HttpError 401 (TokenInvalid) / 403 (NotARunPod). */
  async review(token: string): Promise<PodIdentity> {
    const started = performance.now();
    const key = createHash("sha256").update(token).digest("base64url");
    const cached = this.#cache.get(key);
    if (cached) {
      this.#onReview((performance.now() - started) / 1000, true);
      return cached;
    }
    const review = await this.#api
      .createTokenReview({ body: { spec: { token, audiences: [podTokenAudience] } } })
      .catch((error: unknown) => {
        throw new HttpError(
          503,
          "CredentialUnavailable",
          `the API server could not review the token: ${apiErrorMessage(error)}`,
          { cause: error },
        );
      });
    this.#onReview((performance.now() - started) / 1000, false);
    const status = review.status;
    if (!status?.authenticated || !status.audiences?.includes(podTokenAudience)) {
      throw new HttpError(
        401,
        "TokenInvalid",
        `the token was not accepted for audience "${podTokenAudience}": ${status?.error || "not authenticated"}`,
      );
    }
    const identity = identityOf(status.user?.username, status.user?.extra);
    const expiresAtMs = tokenExpiryMs(token);
    if (expiresAtMs !== undefined) {
      this.#cache.set(key, identity, Math.min(this.#ttlMs, expiresAtMs - this.#now()));
    }
    return identity;
  }
}

function identityOf(
  username: string | undefined,
  extra: Record<string, string[]> | undefined,
): PodIdentity {
  const [namespace, serviceAccount] = username?.startsWith(serviceAccountPrefix)
    ? username.slice(serviceAccountPrefix.length).split(":")
    : [];
  const podName = extra?.[podNameExtra]?.[0];
  const podUid = extra?.[podUidExtra]?.[0];
  if (!namespace || !serviceAccount || !podName || !podUid) {
    throw new HttpError(
      403,
      "NotARunPod",
      `the token of "${username}" is not a service-account token bound to a pod`,
    );
  }
  return { namespace, serviceAccount, podName, podUid };
}

/** exp of a token the API server just accepted; undefined when it has none. */
function tokenExpiryMs(token: string): number | undefined {
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
