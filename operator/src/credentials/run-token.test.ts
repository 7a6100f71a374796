// The run JWT's expiry holds (invariant 2): only the events route lends it a bounded grace, so a
// sidecar's last events arrive; no tolerance, or a shorter one, refuses an expired token.
import assert from "node:assert/strict";
import { it } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { runTokenAudience } from "../../../api/credentials.ts";
import type { HttpError } from "../server/https-server.ts";
import { runTokenVerifier } from "./run-token.ts";

const issuer = "https://operator.test:8443";

it("refuses a run token past its exp unless the caller grants a tolerance that covers it", async () => {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256" }] };
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ run: { namespace: "agents", name: "r", uid: "run-1" } })
    .setProtectedHeader({ alg: "ES256", kid: "k1" })
    .setIssuer(issuer)
    .setAudience(runTokenAudience)
    .setSubject("run-1")
    .setJti("j1")
    .setIssuedAt(now - 120)
    .setExpirationTime(now - 30)
    .sign(privateKey);
  const verify = runTokenVerifier(jwks, issuer);
  const refusal = async (tolerance?: number) =>
    verify(token, tolerance).then(
      () => "accepted",
      (error: HttpError) => `${error.status} ${error.reason}`,
    );
  assert.equal(await refusal(), "401 TokenInvalid");
  assert.equal(await refusal(5), "401 TokenInvalid");
  assert.equal(await refusal(300), "accepted");
});
