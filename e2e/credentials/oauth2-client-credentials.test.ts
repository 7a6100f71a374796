// Client-credentials tokens minted per run, against a real OpenID provider over verified HTTPS.
import assert from "node:assert/strict";
import { createServer as createHttpServer } from "node:http";
import {
  type AddressInfo,
  createServer as createTcpServer,
  type Server,
  type Socket,
} from "node:net";
import { describe, it } from "node:test";
import { generateCertificateAuthority } from "../../operator/src/admission/webhook-certs.ts";
import {
  type ClientCredentialsOptions,
  expiryWithinRun,
  mintClientCredentialsToken,
  OAuth2TokenError,
  outlivesRun,
  revokeToken,
} from "../../operator/src/credentials/oauth2-client-credentials.ts";
import { type OpenIdProvider, useOpenIdProvider } from "../lib/openid-provider.ts";

const tokenTtlSeconds = 300;

function clientOf(provider: OpenIdProvider): ClientCredentialsOptions {
  return {
    tokenUrl: provider.tokenUrl,
    clientId: provider.clientId,
    clientSecret: provider.clientSecret,
    scopes: ["kb.read"],
    caPem: provider.caPem,
  };
}

/** Asserts that `promise` rejects with an OAuth2TokenError and returns it. */
async function tokenError(promise: Promise<unknown>): Promise<OAuth2TokenError> {
  const error = await promise.then(
    () => assert.fail("expected an OAuth2TokenError"),
    (error: unknown) => error,
  );
  assert.ok(error instanceof OAuth2TokenError, `not an OAuth2TokenError: ${error}`);
  return error;
}

async function listening<T extends { listen: Server["listen"]; address: Server["address"] }>(
  server: T,
): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

describe("OAuth 2.0 client-credentials tokens for a run", () => {
  const suite = useOpenIdProvider({ tokenTtlSeconds });

  it("mints a token that introspects active for the client with the requested scope", async () => {
    const token = await mintClientCredentialsToken(clientOf(suite.provider));
    assert.equal(token.tokenType, "Bearer");
    assert.deepEqual(token.scopes, ["kb.read"]);
    const introspection = await suite.provider.introspect(token.accessToken);
    assert.equal(introspection.active, true);
    assert.equal(introspection.client_id, suite.provider.clientId);
    assert.equal(introspection.scope, "kb.read");
  });

  it("authenticates with client_secret_post when the client is registered for it", async () => {
    const { postClient } = suite.provider;
    const token = await mintClientCredentialsToken({
      ...clientOf(suite.provider),
      ...postClient,
      scopes: ["kb.read", "kb.write"],
      authMethod: "client_secret_post",
    });
    const introspection = await suite.provider.introspect(token.accessToken);
    assert.equal(introspection.active, true);
    assert.equal(introspection.client_id, postClient.clientId);
    assert.equal(introspection.scope, "kb.read kb.write");
  });

  it("sets expiresAt from the token's lifetime, never later than the server's expiry", async () => {
    const before = Date.now();
    const token = await mintClientCredentialsToken(clientOf(suite.provider));
    const after = Date.now();
    assert.ok(token.expiresAt, "the provider states expires_in");
    const expiresAt = token.expiresAt.getTime();
    assert.ok(expiresAt >= before + tokenTtlSeconds * 1000 - 1000, `${token.expiresAt} too early`);
    assert.ok(expiresAt <= after + tokenTtlSeconds * 1000, `${token.expiresAt} too late`);
    const { exp } = await suite.provider.introspect(token.accessToken);
    assert.ok(exp !== undefined && expiresAt <= exp * 1000, `${token.expiresAt} after exp ${exp}`);
  });

  it("caps the credential at the run's deadline and asks for revocation when it outlives the run", async () => {
    const token = await mintClientCredentialsToken(clientOf(suite.provider));
    const expiresAt = token.expiresAt as Date;
    const shortRunDeadline = new Date(Date.now() + 60_000);
    assert.deepEqual(expiryWithinRun(token, shortRunDeadline), shortRunDeadline);
    const longRunDeadline = new Date(expiresAt.getTime() + 60_000);
    assert.deepEqual(expiryWithinRun(token, longRunDeadline), expiresAt);
    assert.equal(outlivesRun(token, new Date()), true);
    assert.equal(outlivesRun(token, longRunDeadline), false);
    assert.equal(outlivesRun({ ...token, expiresAt: undefined }, longRunDeadline), true);
  });

  it("names invalid_client and the token URL for a wrong secret, and never the secret", async () => {
    const wrongSecret = `${suite.provider.clientSecret}-wrong`;
    const error = await tokenError(
      mintClientCredentialsToken({ ...clientOf(suite.provider), clientSecret: wrongSecret }),
    );
    assert.equal(error.kind, "Rejected");
    assert.equal(error.oauthError, "invalid_client");
    assert.equal(error.status, 401);
    assert.equal(error.retryable, false);
    assert.match(error.message, /invalid_client/);
    assert.ok(error.message.includes(suite.provider.tokenUrl), error.message);
    assert.ok(!error.message.includes(wrongSecret), error.message);
    assert.ok(!error.message.includes(suite.provider.clientSecret), error.message);
    assert.ok(!JSON.stringify(error).includes(suite.provider.clientSecret));
  });

  it("names invalid_scope for a scope the client is not allowed", async () => {
    const { withheld } = suite.provider.scopes;
    const error = await tokenError(
      mintClientCredentialsToken({ ...clientOf(suite.provider), scopes: ["kb.read", withheld] }),
    );
    assert.equal(error.oauthError, "invalid_scope");
    assert.equal(error.status, 400);
    assert.match(error.message, /invalid_scope/);
  });

  it("refuses a server whose certificate the system trust store does not vouch for", async () => {
    const { caPem: _, ...withoutCa } = clientOf(suite.provider);
    const error = await tokenError(mintClientCredentialsToken(withoutCa));
    assert.equal(error.kind, "TlsVerification");
    assert.equal(error.retryable, false);
    assert.ok(error.message.includes(suite.provider.tokenUrl), error.message);
    assert.match(error.message, /caSecretRef/);
  });

  it("refuses a server whose certificate another CA signed than the one given", async () => {
    const otherCa = await generateCertificateAuthority({ commonName: "other", validityDays: 1 });
    const error = await tokenError(
      mintClientCredentialsToken({ ...clientOf(suite.provider), caPem: otherCa.certPem }),
    );
    assert.equal(error.kind, "TlsVerification");
    assert.match(error.message, /CA given for it does not vouch/);
  });

  it("refuses a plain http token URL before anything is sent", async () => {
    let requests = 0;
    const server = createHttpServer((_request, response) => {
      requests++;
      response.writeHead(500).end();
    });
    const port = await listening(server);
    try {
      const tokenUrl = `http://127.0.0.1:${port}/token`;
      const error = await tokenError(
        mintClientCredentialsToken({ ...clientOf(suite.provider), tokenUrl }),
      );
      assert.equal(error.kind, "InsecureEndpoint");
      assert.ok(error.message.includes(tokenUrl), error.message);
      assert.match(error.message, /not https/);
      const revocationUrl = `http://127.0.0.1:${port}/revoke`;
      const revokeError = await tokenError(
        revokeToken({ ...clientOf(suite.provider), revocationUrl }, "some-token"),
      );
      assert.equal(revokeError.kind, "InsecureEndpoint");
      assert.equal(requests, 0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("revokes a token so that it introspects inactive", async () => {
    const client = clientOf(suite.provider);
    const token = await mintClientCredentialsToken(client);
    const bystander = await mintClientCredentialsToken(client);
    const outcome = await revokeToken(
      { ...client, revocationUrl: suite.provider.revocationUrl },
      token.accessToken,
    );
    assert.equal(outcome, "revoked");
    assert.deepEqual(await suite.provider.introspect(token.accessToken), { active: false });
    assert.equal((await suite.provider.introspect(bystander.accessToken)).active, true);
  });

  it("reports revocation as unsupported without an endpoint, leaving the token active", async () => {
    const client = clientOf(suite.provider);
    const token = await mintClientCredentialsToken(client);
    assert.equal(await revokeToken(client, token.accessToken), "unsupported");
    assert.equal((await suite.provider.introspect(token.accessToken)).active, true);
  });

  it("names invalid_client and the revocation URL when revoking with a wrong secret", async () => {
    const client = clientOf(suite.provider);
    const token = await mintClientCredentialsToken(client);
    const { revocationUrl } = suite.provider;
    const error = await tokenError(
      revokeToken({ ...client, clientSecret: "wrong", revocationUrl }, token.accessToken),
    );
    assert.equal(error.oauthError, "invalid_client");
    assert.ok(error.message.includes(revocationUrl), error.message);
    assert.equal((await suite.provider.introspect(token.accessToken)).active, true);
  });

  it("fails fast and clearly when nothing listens at the token URL", async () => {
    const server = createTcpServer();
    const port = await listening(server);
    await new Promise((resolve) => server.close(resolve));
    const tokenUrl = `https://127.0.0.1:${port}/token`;
    const started = performance.now();
    const error = await tokenError(
      mintClientCredentialsToken({ ...clientOf(suite.provider), tokenUrl, timeoutMs: 5000 }),
    );
    assert.ok(performance.now() - started < 2000);
    assert.equal(error.kind, "Unreachable");
    assert.equal(error.retryable, true);
    assert.ok(error.message.includes(tokenUrl), error.message);
    assert.match(error.message, /ECONNREFUSED/);
  });

  it("gives up within the timeout on a token URL that accepts connections but never answers", async () => {
    const sockets = new Set<Socket>();
    const server = createTcpServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
    });
    const port = await listening(server);
    const timeoutMs = 750;
    try {
      const tokenUrl = `https://127.0.0.1:${port}/token`;
      const started = performance.now();
      const error = await tokenError(
        mintClientCredentialsToken({ ...clientOf(suite.provider), tokenUrl, timeoutMs }),
      );
      const elapsed = performance.now() - started;
      assert.ok(elapsed >= timeoutMs - 50 && elapsed < timeoutMs + 1000, `took ${elapsed} ms`);
      assert.equal(error.kind, "Timeout");
      assert.equal(error.retryable, true);
      assert.ok(error.message.includes(tokenUrl), error.message);
      assert.match(error.message, /within 750 ms/);
      assert.ok(sockets.size > 0, "the client connected");
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
