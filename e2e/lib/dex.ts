// The test cluster's OpenID provider: Dex built from source (e2e/cluster/build.sh), with static
// users and groups. e2e/cluster/oidc-setup.ts configures the one the API server trusts; tests
// start others (startDex) whose tokens the API server must refuse.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { Agent, fetch } from "undici";
import {
  generateCertificateAuthority,
  issueServingCertificate,
} from "../../operator/src/admission/webhook-certs.ts";
import { clusterDir, eventually } from "./cluster.ts";

/** What the API server puts before an OIDC user's e-mail and each of their groups. */
export const oidcPrefix = "oidc:";
/** The client kubectl signs in as: its ID tokens are the ones the API server accepts. */
export const kubernetesClientId = "kubernetes";
/** Another application at the same provider: its ID tokens are for someone else. */
export const otherClientId = "wiki";
/** Short enough that the exec helper's refresh is exercised and an expired token is a test. */
export const idTokenLifetimeSeconds = 120;

export interface OidcUser {
  name: string;
  email: string;
  groups: string[];
  emailVerified: boolean;
}

export const oidcUsers = [
  { name: "alice", email: "alice@example.com", groups: ["ml-platform"], emailVerified: true },
  { name: "bob", email: "bob@example.com", groups: ["security"], emailVerified: true },
  { name: "carol", email: "carol@example.com", groups: ["ml-platform"], emailVerified: true },
  { name: "mallory", email: "mallory@example.com", groups: [], emailVerified: true },
  // In ml-platform, but the provider never verified her address: the API server refuses her.
  { name: "eve", email: "eve@example.com", groups: ["ml-platform"], emailVerified: false },
] as const satisfies readonly OidcUser[];

export type OidcUserName = (typeof oidcUsers)[number]["name"];

/** How an OIDC user appears to Kubernetes, and so in `requester` and AccessPolicy subjects. */
export const oidcUsername = (name: OidcUserName) => `${oidcPrefix}${name}@example.com`;
export const oidcGroup = (group: string) => `${oidcPrefix}${group}`;

export interface DexSettings {
  issuer: string;
  /** host:port of the HTTPS listener. */
  listen: string;
  tlsCertFile: string;
  tlsKeyFile: string;
  /** Each user's password, by name. */
  passwords: ReadonlyMap<string, string>;
}

/** Dex's configuration (JSON, which Dex reads as the YAML it is). */
export function dexConfig(settings: DexSettings): string {
  const client = (id: string, name: string) => ({
    id,
    name,
    // A command-line client keeps no secret (kubelogin's redirect, should anyone sign in by browser).
    public: true,
    redirectURIs: ["http://localhost:8000"],
  });
  return JSON.stringify(
    {
      issuer: settings.issuer,
      storage: { type: "memory" },
      web: {
        https: settings.listen,
        tlsCert: settings.tlsCertFile,
        tlsKey: settings.tlsKeyFile,
        tlsMinVersion: "1.2",
      },
      logger: { level: "warn" },
      expiry: { idTokens: `${idTokenLifetimeSeconds}s` },
      oauth2: { passwordConnector: "local", skipApprovalScreen: true },
      staticClients: [
        client(kubernetesClientId, "kubectl"),
        client(otherClientId, "the team wiki"),
      ],
      enablePasswordDB: true,
      staticPasswords: oidcUsers.map((user) => {
        const password = settings.passwords.get(user.name);
        if (!password) throw new Error(`no password for OIDC user ${user.name}`);
        return {
          email: user.email,
          // Dex refuses a bcrypt cost below 10.
          hash: bcrypt.hashSync(password, 10),
          username: user.name,
          userID: `user-${user.name}`,
          groups: user.groups,
          emailVerified: user.emailVerified,
        };
      }),
    },
    null,
    2,
  );
}

export interface IdTokenRequest {
  tokenUrl: string;
  /** PEM of the CA the provider's certificate chains to. */
  caPem: string;
  clientId: string;
  username: string;
  password: string;
}

/**
 * An ID token from the password grant, requested directly at a token endpoint: a test needs
 * tokens from providers a careful client (openid-client's discovery) would refuse to talk to.
 */
export async function requestIdToken(request: IdTokenRequest): Promise<string> {
  const dispatcher = new Agent({ connect: { ca: request.caPem } });
  try {
    const response = await fetch(request.tokenUrl, {
      method: "POST",
      dispatcher,
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "password",
        client_id: request.clientId,
        username: request.username,
        password: request.password,
        scope: "openid email profile groups",
      }),
    });
    const body = (await response.json()) as { id_token?: string; error?: string };
    if (!response.ok || !body.id_token)
      throw new Error(`${request.tokenUrl} answered ${response.status}: ${JSON.stringify(body)}`);
    return body.id_token;
  } finally {
    await dispatcher.destroy();
  }
}

/** The test cluster's provider, as e2e/cluster/oidc-setup.ts wrote it down. */
export interface ClusterProvider {
  issuer: string;
  tokenUrl: string;
  caPem: string;
  password(name: OidcUserName): string;
}

export async function clusterProvider(): Promise<ClusterProvider> {
  const issuer = (await readFile(join(clusterDir, "oidc", "issuer"), "utf8")).trim();
  const caPem = await readFile(join(clusterDir, "pki", "oidc-ca.crt"), "utf8");
  const passwords = new Map<string, string>();
  for (const user of oidcUsers) {
    const file = join(clusterDir, "oidc", `${user.name}.password`);
    passwords.set(user.name, (await readFile(file, "utf8")).trim());
  }
  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    caPem,
    password: (name) => passwords.get(name) ?? "",
  };
}

export interface DexProcess {
  /** The issuer its tokens name. */
  issuer: string;
  tokenUrl: string;
  caPem: string;
  stop(): Promise<void>;
}

/**
 * Starts a Dex of the test's own, with the cluster provider's users and passwords, its own CA
 * and its own signing keys, listening on `port`. `issuer` defaults to its own URL; a test gives
 * the cluster provider's issuer to make an impostor.
 */
export async function startDex(options: {
  port: number;
  passwords: ReadonlyMap<string, string>;
  issuer?: string;
}): Promise<DexProcess> {
  const dir = mkdtempSync(join(tmpdir(), "lgjit-dex-"));
  const ca = await generateCertificateAuthority({
    commonName: "lgjit-e2e-dex-ca",
    validityDays: 1,
  });
  const serving = await issueServingCertificate(ca, {
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    validityDays: 1,
  });
  writeFileSync(join(dir, "tls.crt"), serving.certPem);
  writeFileSync(join(dir, "tls.key"), serving.keyPem, { mode: 0o600 });
  const listen = `127.0.0.1:${options.port}`;
  const issuer = options.issuer ?? `https://${listen}/dex`;
  writeFileSync(
    join(dir, "dex.json"),
    dexConfig({
      issuer,
      listen,
      tlsCertFile: join(dir, "tls.crt"),
      tlsKeyFile: join(dir, "tls.key"),
      passwords: options.passwords,
    }),
  );
  const child: ChildProcess = spawn(
    join(clusterDir, "bin", "dex"),
    ["serve", join(dir, "dex.json")],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  // Dex serves under the issuer's path, wherever it listens.
  const base = `https://${listen}${new URL(issuer).pathname}`;
  const dispatcher = new Agent({ connect: { ca: ca.certPem } });
  try {
    await eventually("a test Dex to serve discovery", async () => {
      if (child.exitCode !== null) throw new Error(`dex exited ${child.exitCode}: ${stderr}`);
      const response = await fetch(`${base}/.well-known/openid-configuration`, { dispatcher });
      return response.ok;
    });
  } finally {
    await dispatcher.destroy();
  }
  return {
    issuer,
    tokenUrl: `${base}/token`,
    caPem: ca.certPem,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
