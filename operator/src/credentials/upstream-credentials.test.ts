// A Connection that cannot work as configured is a permanent refusal a person must act on (424),
// never a transient 503 every pod retries every few seconds until its deadline.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HttpError } from "../server/https-server.ts";
import { OAuth2TokenError } from "./oauth2-client-credentials.ts";
import { PostgresCredentialError } from "./postgres-roles.ts";
import { upstreamFailure } from "./upstream-credentials.ts";

const answer = (error: unknown) => {
  const failure = upstreamFailure("kb-postgres", error);
  return [failure.status, failure.reason];
};

describe("upstreamFailure", () => {
  it("calls what a person must fix permanent: 424 CredentialMisconfigured", () => {
    for (const error of [
      new PostgresCredentialError("ActionRoleMissing", 'action role "kb_read" does not exist'),
      new PostgresCredentialError("AuthenticationFailed", "password authentication failed", {
        code: "28P01",
      }),
      new PostgresCredentialError("Failed", "permission denied to create role", { code: "42501" }),
      new PostgresCredentialError("Unreachable", 'database "kb" does not exist', { code: "3D000" }),
      new OAuth2TokenError("refused client", {
        kind: "Rejected",
        endpoint: "https://idp/token",
        oauthError: "invalid_client",
        status: 401,
      }),
    ]) {
      assert.deepEqual(answer(error), [424, "CredentialMisconfigured"], error.message);
    }
    const named = new PostgresCredentialError(
      "ActionRoleMissing",
      'connection "kb-postgres": no role',
    );
    assert.equal(
      upstreamFailure("kb-postgres", named).message,
      'connection "kb-postgres": no role',
    );
    assert.match(
      upstreamFailure("kb-postgres", new PostgresCredentialError("ActionRoleMissing", "no role"))
        .message,
      /^connection "kb-postgres": no role$/,
    );
  });

  it("calls what may pass transient: 503 CredentialUnavailable", () => {
    for (const error of [
      new PostgresCredentialError("Unreachable", "connect ECONNREFUSED"),
      new PostgresCredentialError("Failed", "deadlock detected", { code: "40P01" }),
      new OAuth2TokenError("timed out", { kind: "Timeout", endpoint: "https://idp/token" }),
      new OAuth2TokenError("busy", {
        kind: "Rejected",
        endpoint: "https://idp/token",
        oauthError: "temporarily_unavailable",
        status: 400,
      }),
      new Error("socket hang up"),
    ]) {
      assert.deepEqual(answer(error), [503, "CredentialUnavailable"], error.message);
    }
  });

  it("keeps a refusal already made", () => {
    const refusal = new HttpError(
      424,
      "CredentialMisconfigured",
      'connection "kb-api": has no key "token"',
    );
    assert.equal(upstreamFailure("kb-api", refusal), refusal);
  });
});
