// kubectl's exec credential helper for the test cluster's OIDC users, in the place kubelogin takes
// on a real cluster: an ID token from the cluster's Dex (password grant, through openid-client,
// which checks the issuer, audience and expiry), cached until shortly before it expires.
// The kubeconfigs oidc-setup.ts writes run it as:
//   oidc-token.ts --issuer URL --ca-file PEM --client-id ID --username EMAIL --password-file FILE --cache-file FILE
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import * as oidc from "openid-client";
import { Agent, fetch as undiciFetch } from "undici";

// A token is reported as ending this much before it does, and reused only while twice this is
// left: a client never sends one in its last seconds, when the API server may refuse it on arrival.
const marginMs = 20_000;

interface CachedToken {
  idToken: string;
  expiresAt: number;
}

const { values: flags } = parseArgs({
  options: {
    issuer: { type: "string" },
    "ca-file": { type: "string" },
    "client-id": { type: "string" },
    username: { type: "string" },
    "password-file": { type: "string" },
    "cache-file": { type: "string" },
  },
  strict: true,
});

function required(name: keyof typeof flags): string {
  const value = flags[name];
  if (!value) fail(`--${name} is required`);
  return value;
}

function fail(message: string): never {
  process.stderr.write(`oidc-token: ${message}\n`);
  process.exit(1);
}

function cached(file: string): CachedToken | undefined {
  try {
    const token = JSON.parse(readFileSync(file, "utf8")) as CachedToken;
    return token.expiresAt - Date.now() > 2 * marginMs ? token : undefined;
  } catch {
    return undefined;
  }
}

async function signIn(): Promise<CachedToken> {
  const issuer = required("issuer");
  const username = required("username");
  const password = readFileSync(required("password-file"), "utf8").trim();
  // Only the provider's own CA is trusted: no public CA may vouch for the test issuer.
  const dispatcher = new Agent({ connect: { ca: readFileSync(required("ca-file"), "utf8") } });
  const customFetch: oidc.CustomFetch = (url, options) =>
    undiciFetch(url, { ...options, dispatcher } as Parameters<typeof undiciFetch>[1]) as never;
  try {
    const config = await oidc.discovery(
      new URL(issuer),
      required("client-id"),
      undefined,
      oidc.None(),
      { [oidc.customFetch]: customFetch, timeout: 10 },
    );
    const tokens = await oidc.genericGrantRequest(config, "password", {
      username,
      password,
      scope: "openid email profile groups",
    });
    const claims = tokens.claims();
    if (!tokens.id_token || !claims) fail(`${issuer} gave ${username} no ID token`);
    return { idToken: tokens.id_token, expiresAt: claims.exp * 1000 };
  } catch (error) {
    if (error instanceof oidc.ResponseBodyError)
      fail(`${issuer} refused ${username}: ${error.error} ${error.error_description ?? ""}`.trim());
    fail(`signing ${username} in at ${issuer} failed: ${(error as Error).message}`);
  } finally {
    await dispatcher.destroy();
  }
}

const cacheFile = required("cache-file");
let token = cached(cacheFile);
if (!token) {
  token = await signIn();
  writeFileSync(cacheFile, JSON.stringify(token), { mode: 0o600 });
}
process.stdout.write(
  `${JSON.stringify({
    apiVersion: "client.authentication.k8s.io/v1",
    kind: "ExecCredential",
    status: {
      token: token.idToken,
      expirationTimestamp: new Date(token.expiresAt - marginMs).toISOString(),
    },
  })}\n`,
);
