// The test cluster's OIDC identities, written by up.sh before the API server starts: Dex's
// configuration (static users and groups, a fresh password each), the AuthenticationConfiguration
// through which the API server trusts it, and a kubeconfig per user whose token comes from Dex.
//   oidc-setup.ts --state DIR --issuer URL --server URL
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { dexConfig, kubernetesClientId, oidcPrefix, oidcUsers } from "./dex-config.ts";

const { values: flags } = parseArgs({
  options: {
    state: { type: "string" },
    issuer: { type: "string" },
    server: { type: "string" },
  },
  strict: true,
});
const { state, issuer, server } = flags;
if (!state || !issuer || !server) {
  process.stderr.write("usage: oidc-setup.ts --state DIR --issuer URL --server URL\n");
  process.exit(2);
}
const repoRoot = join(import.meta.dirname, "..", "..");
const dir = join(state, "oidc");
const pki = join(state, "pki");
const oidcCaFile = join(pki, "oidc-ca.crt");
mkdirSync(dir, { recursive: true, mode: 0o700 });

const passwords = new Map(
  oidcUsers.map((user) => [user.name, randomBytes(18).toString("base64url")]),
);
for (const [name, password] of passwords)
  writeFileSync(join(dir, `${name}.password`), `${password}\n`, { mode: 0o600 });
writeFileSync(join(dir, "issuer"), `${issuer}\n`);
writeFileSync(
  join(dir, "dex.json"),
  dexConfig({
    issuer,
    listen: new URL(issuer).host,
    tlsCertFile: join(pki, "dex.crt"),
    tlsKeyFile: join(pki, "dex.key"),
    passwords,
  }),
  { mode: 0o600 },
);

// Usernames and groups carry a prefix, so no IdP account can pass for a certificate identity or
// a system: group; the e-mail names the user only once the provider has verified it.
const authentication = {
  apiVersion: "apiserver.config.k8s.io/v1",
  kind: "AuthenticationConfiguration",
  jwt: [
    {
      issuer: {
        url: issuer,
        audiences: [kubernetesClientId],
        certificateAuthority: readFileSync(oidcCaFile, "utf8"),
      },
      claimValidationRules: [
        {
          expression: "claims.?email_verified.orValue(false) == true",
          message: "the identity provider has not verified this e-mail address",
        },
      ],
      claimMappings: {
        username: { expression: `"${oidcPrefix}" + claims.email` },
        groups: { claim: "groups", prefix: oidcPrefix },
        uid: { claim: "sub" },
      },
    },
  ],
};
writeFileSync(join(state, "authentication-config.yaml"), stringify(authentication));

const clusterCa = readFileSync(join(pki, "ca.crt")).toString("base64");
for (const user of oidcUsers) {
  const kubeconfig = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "langgraph-jit-test",
        cluster: { server, "certificate-authority-data": clusterCa },
      },
    ],
    users: [
      {
        name: `oidc-${user.name}`,
        user: {
          exec: {
            apiVersion: "client.authentication.k8s.io/v1",
            command: join(repoRoot, "node_modules", ".bin", "node"),
            args: [
              join(repoRoot, "e2e", "cluster", "oidc-token.ts"),
              ...["--issuer", issuer, "--ca-file", oidcCaFile],
              ...["--client-id", kubernetesClientId, "--username", user.email],
              ...["--password-file", join(dir, `${user.name}.password`)],
              ...["--cache-file", join(dir, `${user.name}.token.json`)],
            ],
            interactiveMode: "Never",
            provideClusterInfo: false,
          },
        },
      },
    ],
    contexts: [
      {
        name: `oidc-${user.name}@langgraph-jit-test`,
        context: { cluster: "langgraph-jit-test", user: `oidc-${user.name}`, namespace: "default" },
      },
    ],
    "current-context": `oidc-${user.name}@langgraph-jit-test`,
  };
  writeFileSync(join(dir, `${user.name}.kubeconfig`), stringify(kubeconfig), { mode: 0o600 });
}
