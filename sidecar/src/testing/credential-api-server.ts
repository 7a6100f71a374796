// A real HTTPS server that plays the operator's credential API in the sidecar's tests: its own
// CA, run JWTs signed with real ES256 keys by jose, and switches for every way an answer can go
// wrong. The operator's own issuer is tested end to end separately.
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from "jose";
import {
  type CredentialBundle,
  credentialApi,
  type GrantClaim,
  type HttpCredential,
  type PostgresCredential,
  type RunClaims,
  runTokenAudience,
} from "../../../api/credentials.ts";
import type { SessionEvent, SessionEventsBatch } from "../../../api/session-events.ts";
import {
  type CertificateAuthority,
  generateCertificateAuthority,
  issueServingCertificate,
} from "../../../operator/src/admission/webhook-certs.ts";

/** The run and pod the sidecar under test believes it is. */
export const testIdentity = {
  run: "kb-refresh",
  runUid: "0b6f2a8e-5d1c-4d3e-9a47-3c1b2f6e8d10",
  namespace: "agents",
  podName: "kb-refresh-job-x7k2p",
  podUid: "7f3c9d21-8a4b-4e6f-b1c2-9d8e7f6a5b4c",
};

export interface TestSigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function createSigningKey(): Promise<TestSigningKey> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const publicJwk = { kty, crv, x, y };
  return { kid: await calculateJwkThumbprint(publicJwk), privateKey, publicJwk };
}

export function createTestAuthority(): Promise<CertificateAuthority> {
  return generateCertificateAuthority({ commonName: "sidecar-test-operator-ca", validityDays: 1 });
}

export interface RunTokenOptions {
  /** Defaults to the first published key. */
  key?: TestSigningKey;
  /** Merged over the valid claims; a value of undefined removes the claim. */
  claims?: Record<string, unknown>;
  /** Merged over { alg: ES256, kid, typ: JWT }. */
  header?: Record<string, unknown>;
  lifetimeSeconds?: number;
}

export interface BundleOptions extends RunTokenOptions {
  /** Defaults to the JWT's exp. */
  expiresAt?: string;
}

export interface IssueAnswer {
  status: number;
  body: unknown;
}

export interface SeenRequest {
  authorization: string | undefined;
  at: number;
}

export class CredentialApiServer {
  readonly caPem: string;
  /** The keys in the served JWKS, in order. */
  published: TestSigningKey[];
  /** Answers each POST credentialApi.issue; the default issues a valid bundle. */
  onIssue: (request: SeenRequest) => Promise<IssueAnswer>;
  /** Answers a status poll at once instead of holding it, when it returns an answer. */
  onStatus: (request: SeenRequest) => IssueAnswer | undefined = () => undefined;
  readonly issueRequests: SeenRequest[] = [];
  readonly statusRequests: SeenRequest[] = [];
  jwksRequests = 0;
  revoked = false;
  /** Session events stored, by sequence number; every event ever posted is counted. */
  readonly events = new Map<number, SessionEvent>();
  eventsReceived = 0;
  eventPosts = 0;
  /** The kb-api connection's credential in every bundle; tests point it at their upstream. */
  kbApi: HttpCredential = {
    type: "http",
    url: "https://kb-api.internal",
    headers: { authorization: "Bearer upstream-secret" },
  };
  /** A kb-postgres connection in every bundle, when a test sets one. */
  kbPostgres: { credential: PostgresCredential; grant: GrantClaim } | undefined;
  readonly #server: Server;
  readonly #heldPolls = new Set<() => void>();
  #port: number;

  private constructor(
    caPem: string,
    tls: { certPem: string; keyPem: string },
    key: TestSigningKey,
    port: number,
  ) {
    this.caPem = caPem;
    this.published = [key];
    this.#port = port;
    this.onIssue = async () => ({ status: 200, body: await this.bundle() });
    this.#server = createServer({ cert: tls.certPem, key: tls.keyPem }, (request, response) => {
      this.#handle(request, response).catch((error: unknown) => {
        response.writeHead(500, { "content-type": "application/json" });
        response.end(JSON.stringify({ error: String(error), reason: "Internal" }));
      });
    });
  }

  /** A server (not yet listening) on port, 0 for any; its certificate is for 127.0.0.1. */
  static async create(
    options: { port?: number; authority?: CertificateAuthority } = {},
  ): Promise<CredentialApiServer> {
    const authority = options.authority ?? (await createTestAuthority());
    const serving = await issueServingCertificate(authority, {
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    return new CredentialApiServer(
      authority.certPem,
      serving,
      await createSigningKey(),
      options.port ?? 0,
    );
  }

  get url(): string {
    return `https://127.0.0.1:${this.#port}`;
  }

  /** Status long-polls being held right now. */
  get heldPolls(): number {
    return this.#heldPolls.size;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(this.#port, "127.0.0.1", resolve));
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const release of this.#heldPolls) release();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Ends the run's credential: held and future status polls answer 401 Revoked. */
  revoke(): void {
    this.revoked = true;
    for (const release of this.#heldPolls) release();
  }

  async signRunToken(options: RunTokenOptions = {}): Promise<string> {
    const key = options.key ?? this.published[0];
    if (!key) throw new Error("no signing key is published; pass one");
    const payload = without({ ...this.#claims(options.lifetimeSeconds), ...options.claims });
    const header = { alg: "ES256", kid: key.kid, typ: "JWT", ...options.header };
    return new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(key.privateKey);
  }

  /** A JWT with alg none: valid claims, no signature. */
  unsignedRunToken(): string {
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    return `${encode({ alg: "none", typ: "JWT" })}.${encode(this.#claims())}.`;
  }

  async bundle(options: BundleOptions = {}): Promise<CredentialBundle> {
    return this.bundleFor(await this.signRunToken(options), options.expiresAt);
  }

  bundleFor(token: string, expiresAt?: string): CredentialBundle {
    const [, payload = ""] = token.split(".");
    const { exp } = JSON.parse(Buffer.from(payload, "base64url").toString()) as { exp?: number };
    return {
      token,
      expiresAt: expiresAt ?? new Date((exp ?? 0) * 1000).toISOString(),
      credentials: {
        "kb-api": this.kbApi,
        ...(this.kbPostgres ? { "kb-postgres": this.kbPostgres.credential } : {}),
      },
    };
  }

  #claims(lifetimeSeconds = 600): JWTPayload & RunClaims {
    const now = Math.floor(Date.now() / 1000);
    return {
      iss: this.url,
      aud: runTokenAudience,
      sub: testIdentity.runUid,
      jti: randomUUID(),
      iat: now,
      exp: now + lifetimeSeconds,
      run: {
        namespace: testIdentity.namespace,
        name: testIdentity.run,
        uid: testIdentity.runUid,
        deadline: new Date((now + 3600) * 1000).toISOString(),
      },
      pod: { name: testIdentity.podName, uid: testIdentity.podUid },
      grants: [
        { connection: "kb-api", type: "http", actions: ["read"] },
        ...(this.kbPostgres ? [this.kbPostgres.grant] : []),
      ],
    };
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", this.url);
    const seen = { authorization: request.headers.authorization, at: Date.now() };
    const answer = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (request.method === "POST" && url.pathname === credentialApi.issue) {
      this.issueRequests.push(seen);
      const { status, body } = await this.onIssue(seen);
      return answer(status, body);
    }
    if (request.method === "GET" && url.pathname === credentialApi.jwks) {
      this.jwksRequests++;
      return answer(200, { keys: this.published.map((k) => ({ ...k.publicJwk, kid: k.kid })) });
    }
    if (request.method === "GET" && url.pathname === credentialApi.status) {
      this.statusRequests.push(seen);
      const revokedAnswer = () =>
        answer(401, { error: "the run's credential is revoked", reason: "Revoked" });
      if (this.revoked) return revokedAnswer();
      const immediate = this.onStatus(seen);
      if (immediate) return answer(immediate.status, immediate.body);
      const waitSeconds = Math.min(Number(url.searchParams.get("waitSeconds") ?? 0), 30);
      // Held until revoked or waitSeconds pass, like the operator's long-poll.
      await new Promise<void>((resolve) => {
        const release = () => {
          clearTimeout(timer);
          this.#heldPolls.delete(release);
          resolve();
        };
        const timer = setTimeout(release, waitSeconds * 1000);
        this.#heldPolls.add(release);
        response.on("close", release);
      });
      if (response.destroyed) return;
      if (this.revoked) return revokedAnswer();
      return answer(200, { state: "active", deadline: new Date(Date.now() + 3600_000) });
    }
    if (request.method === "POST" && url.pathname === credentialApi.events) {
      if (!request.headers.authorization?.startsWith("Bearer ey")) {
        return answer(401, { error: "no run token", reason: "Unauthenticated" });
      }
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const { events } = JSON.parse(Buffer.concat(chunks).toString()) as SessionEventsBatch;
      this.eventPosts++;
      // Keyed by sequence number, like the operator's store: a resend changes nothing.
      for (const event of events) {
        this.eventsReceived++;
        if (!this.events.has(event.seq)) this.events.set(event.seq, event);
      }
      return answer(200, { ackedThrough: events.at(-1)?.seq ?? 0 });
    }
    answer(404, { error: `no ${request.method} ${url.pathname}`, reason: "NotFound" });
  }
}

function without(claims: Record<string, unknown>): JWTPayload {
  return Object.fromEntries(Object.entries(claims).filter(([, value]) => value !== undefined));
}
