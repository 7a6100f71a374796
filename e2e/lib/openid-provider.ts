// A real OpenID provider (oidc-provider 9) for the OAuth 2.0 client-credentials tests: served
// over HTTPS on 127.0.0.1 with a CA of its own, in this process, gone without a trace on stop().
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { after, before } from "node:test";
import { exportJWK, generateKeyPair } from "jose";
import Provider, {
  type Adapter,
  type AdapterPayload,
  type ClientAuthMethod,
  type ClientMetadata,
} from "oidc-provider";
import { Agent, fetch } from "undici";
import {
  generateCertificateAuthority,
  issueServingCertificate,
} from "../../operator/src/admission/webhook-certs.ts";

export interface OpenIdProviderOptions {
  /** Lifetime of client-credentials access tokens; 600 s (oidc-provider's default) if unset. */
  tokenTtlSeconds?: number;
}

export interface OpenIdClient {
  clientId: string;
  clientSecret: string;
}

/** What a token introspects as (RFC 7662); only `active` is present for an inactive token. */
export interface Introspection {
  active: boolean;
  client_id?: string;
  scope?: string;
  exp?: number;
  iat?: number;
  token_type?: string;
}

export interface OpenIdProvider extends OpenIdClient {
  issuer: string;
  tokenUrl: string;
  revocationUrl: string;
  introspectionUrl: string;
  /** PEM of the CA that signs the provider's serving certificate (and nothing else). */
  caPem: string;
  /** The same grant for a client registered for client_secret_post (clientId/Secret: basic). */
  postClient: OpenIdClient;
  /** Scopes the clients may ask for; `kb.admin` is known to the provider but granted to none. */
  scopes: { granted: string[]; withheld: string };
  introspect(token: string): Promise<Introspection>;
  stop(): Promise<void>;
}

const grantedScopes = ["kb.read", "kb.write"];
const withheldScope = "kb.admin";

// Reserved characters exercise the form-encoding that client_secret_basic requires.
const newSecret = () => `${randomBytes(24).toString("base64url")}:+/%`;

function clientMetadata(client: OpenIdClient, method: ClientAuthMethod): ClientMetadata {
  return {
    client_id: client.clientId,
    client_secret: client.clientSecret,
    grant_types: ["client_credentials"],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: method,
    scope: grantedScopes.join(" "),
  };
}

// Per-provider storage: nothing is shared between providers, and oidc-provider does not warn
// about its process-wide development adapter. Expiry is checked by oidc-provider itself.
function mapAdapterFactory(): (model: string) => Adapter {
  const store = new Map<string, AdapterPayload>();
  return (model) => {
    const key = (id: string) => `${model}:${id}`;
    const byField = (field: "uid" | "userCode", value: string) =>
      [...store.entries()].find(([k, p]) => k.startsWith(`${model}:`) && p[field] === value)?.[1];
    return {
      upsert: async (id, payload) => void store.set(key(id), payload),
      find: async (id) => store.get(key(id)),
      findByUid: async (uid) => byField("uid", uid),
      findByUserCode: async (userCode) => byField("userCode", userCode),
      consume: async (id) => {
        const payload = store.get(key(id));
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id) => void store.delete(key(id)),
      revokeByGrantId: async (grantId) => {
        for (const [k, payload] of store) if (payload.grantId === grantId) store.delete(k);
      },
    };
  };
}

export async function startOpenIdProvider(
  options: OpenIdProviderOptions = {},
): Promise<OpenIdProvider> {
  const ca = await generateCertificateAuthority({
    commonName: "lgjit-test-idp-ca",
    validityDays: 1,
  });
  const serving = await issueServingCertificate(ca, {
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    validityDays: 1,
  });
  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const suffix = randomBytes(4).toString("hex");
  const basicClient = { clientId: `kb-agent-${suffix}`, clientSecret: newSecret() };
  const postClient = { clientId: `kb-agent-post-${suffix}`, clientSecret: newSecret() };
  const routes = {
    token: "/token",
    revocation: "/token/revocation",
    introspection: "/token/introspection",
  };
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const provider = new Provider(issuer, {
    adapter: mapAdapterFactory(),
    jwks: { keys: [{ ...(await exportJWK(privateKey)), alg: "ES256", use: "sig" }] },
    clientDefaults: { id_token_signed_response_alg: "ES256" },
    clients: [
      clientMetadata(basicClient, "client_secret_basic"),
      clientMetadata(postClient, "client_secret_post"),
    ],
    scopes: [...grantedScopes, withheldScope],
    routes,
    features: {
      clientCredentials: { enabled: true },
      // introspect() asks as the basic client about any test token; a client revokes its own only.
      introspection: { enabled: true, allowedPolicy: async () => true },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      devInteractions: { enabled: false },
    },
    // No resource indicator is sent, so tokens are opaque and carry the requested scopes as is.
    ttl: { ClientCredentials: options.tokenTtlSeconds ?? 600 },
  });
  server.on("request", provider.callback());

  const dispatcher = new Agent({ connect: { ca: ca.certPem } });
  const introspect = async (token: string): Promise<Introspection> => {
    const response = await fetch(`${issuer}${routes.introspection}`, {
      method: "POST",
      dispatcher,
      headers: {
        authorization: `Basic ${Buffer.from(
          `${encodeURIComponent(basicClient.clientId)}:${encodeURIComponent(basicClient.clientSecret)}`,
        ).toString("base64")}`,
      },
      body: new URLSearchParams({ token }),
    });
    if (!response.ok) {
      throw new Error(
        `introspection at ${issuer} answered ${response.status}: ${await response.text()}`,
      );
    }
    return (await response.json()) as Introspection;
  };

  return {
    issuer,
    tokenUrl: `${issuer}${routes.token}`,
    revocationUrl: `${issuer}${routes.revocation}`,
    introspectionUrl: `${issuer}${routes.introspection}`,
    caPem: ca.certPem,
    ...basicClient,
    postClient,
    scopes: { granted: grantedScopes, withheld: withheldScope },
    introspect,
    stop: async () => {
      await dispatcher.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Keep-alive sockets of the code under test would otherwise hold the server open.
      server.closeAllConnections();
      await closed;
    },
  };
}

/** Registers hooks giving the calling suite a provider of its own, stopped afterwards. */
export function useOpenIdProvider(options: OpenIdProviderOptions = {}): {
  provider: OpenIdProvider;
} {
  const suite = {} as { provider: OpenIdProvider };
  before(async () => {
    suite.provider = await startOpenIdProvider(options);
  });
  after(async () => {
    await suite.provider?.stop();
  });
  return suite;
}
