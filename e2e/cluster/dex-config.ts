// The test cluster's OIDC users and its Dex's configuration: what e2e/cluster/oidc-setup.ts
// writes before the API server starts, and what e2e/lib/dex.ts starts other Dexes with. Kept
// free of the test libraries, so bringing the cluster up loads nothing but bcryptjs.
import bcrypt from "bcryptjs";

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

export const oidcUser = (name: OidcUserName): OidcUser =>
  oidcUsers.find((user) => user.name === name) as OidcUser;

/** How an OIDC user appears to Kubernetes, and so in `requester` and AccessPolicy subjects. */
export const oidcUsername = (name: OidcUserName) => `${oidcPrefix}${oidcUser(name).email}`;
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
