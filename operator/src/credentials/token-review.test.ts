// A sidecar's token names its pod only when the API server accepted it for langgraph-jit's
// audience and bound it to a pod; a review is reused briefly, never past the token's expiry.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AuthenticationV1Api, V1TokenReview } from "@kubernetes/client-node";
import { podTokenAudience } from "../../../api/credentials.ts";
import { apiError } from "../testing/fake-cluster.ts";
import { PodTokenReviewer } from "./token-review.ts";

const t0 = Date.parse("2026-12-05T10:00:00Z");

/** A JWT-shaped token: the reviewer reads only its exp (the API server verified it). */
function token(expMs?: number, id = "a"): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "RS256" })}.${part({ jti: id, ...(expMs ? { exp: expMs / 1000 } : {}) })}.sig`;
}

const podUser = {
  username: "system:serviceaccount:agents:langgraph-jit-run",
  extra: {
    "authentication.kubernetes.io/pod-name": ["r-abcde"],
    "authentication.kubernetes.io/pod-uid": ["pod-1"],
  },
};

function reviewer(answer: () => Promise<V1TokenReview["status"]>) {
  const clock = { now: t0 };
  const calls: string[] = [];
  const cached: boolean[] = [];
  const api: Pick<AuthenticationV1Api, "createTokenReview"> = {
    createTokenReview: async ({ body }) => {
      assert.deepEqual(body.spec.audiences, [podTokenAudience], "asks for our audience only");
      calls.push(body.spec.token ?? "");
      return { spec: body.spec, status: await answer() };
    },
  };
  const subject = new PodTokenReviewer({
    api,
    now: () => clock.now,
    onReview: (_seconds, hit) => cached.push(hit),
  });
  return { subject, clock, calls, cached };
}

const accepted = async () => ({
  authenticated: true,
  audiences: [podTokenAudience],
  user: podUser,
});

async function refusal(call: Promise<unknown>): Promise<string> {
  const error = (await call.then(
    () => assert.fail("the token was accepted"),
    (e: unknown) => e,
  )) as { status: number; reason: string };
  return `${error.status} ${error.reason}`;
}

describe("PodTokenReviewer", () => {
  it("names the pod a bound token belongs to, and reuses the review for a few seconds", async () => {
    const { subject, clock, calls, cached } = reviewer(accepted);
    const bound = token(t0 + 3_600_000);
    const identity = {
      namespace: "agents",
      serviceAccount: "langgraph-jit-run",
      podName: "r-abcde",
      podUid: "pod-1",
    };
    assert.deepEqual(await subject.review(bound), identity);
    assert.deepEqual(await subject.review(bound), identity);
    assert.equal(calls.length, 1);
    assert.deepEqual(cached, [false, true]);
    clock.now += 5_000;
    await subject.review(bound);
    assert.equal(calls.length, 2, "reviewed again once the cache time is up");
  });

  it("never reuses a review past the token's own expiry, nor one of a token without exp", async () => {
    const { subject, clock, calls } = reviewer(accepted);
    const shortLived = token(t0 + 2_000);
    await subject.review(shortLived);
    clock.now += 2_000;
    await subject.review(shortLived);
    assert.equal(calls.length, 2);
    const noExpiry = token(undefined, "b");
    await subject.review(noExpiry);
    await subject.review(noExpiry);
    assert.equal(calls.length, 4);
  });

  it("refuses a token the API server did not accept, or accepted for another audience: 401", async () => {
    const denied = reviewer(async () => ({ authenticated: false, error: "token expired" }));
    assert.equal(await refusal(denied.subject.review(token(t0 + 60_000))), "401 TokenInvalid");
    const elsewhere = reviewer(async () => ({
      authenticated: true,
      audiences: ["https://kubernetes.default.svc"],
      user: podUser,
    }));
    assert.equal(await refusal(elsewhere.subject.review(token(t0 + 60_000))), "401 TokenInvalid");
    await refusal(denied.subject.review(token(t0 + 60_000)));
    assert.equal(denied.calls.length, 2, "a refusal is not cached");
  });

  it("refuses a valid token that is not bound to a pod: 403", async () => {
    for (const user of [
      { username: "alice@example.com" },
      { username: podUser.username },
      { username: podUser.username, extra: { "authentication.kubernetes.io/pod-name": ["p"] } },
      { username: "system:serviceaccount:agents", extra: podUser.extra },
    ]) {
      const { subject } = reviewer(async () => ({
        authenticated: true,
        audiences: [podTokenAudience],
        user,
      }));
      assert.equal(
        await refusal(subject.review(token(t0 + 60_000))),
        "403 NotARunPod",
        user.username,
      );
    }
  });

  it("answers 503 when the API server cannot review, so the sidecar retries", async () => {
    const { subject } = reviewer(() => Promise.reject(apiError(500, "etcd unavailable")));
    assert.equal(await refusal(subject.review(token(t0 + 60_000))), "503 CredentialUnavailable");
  });
});
