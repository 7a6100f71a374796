// The test cluster's OpenID provider, Dex (e2e/cluster/dex-config.ts), from the tests' side: the
// one the API server trusts, tokens from it, and Dexes of a test's own whose tokens the API
// server must refuse.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, fetch } from "undici";
import {
  generateCertificateAuthority,
  issueServingCertificate,
} from "../../operator/src/admission/webhook-certs.ts";
import {
  dexConfig,
  kubernetesClientId,
  type OidcUserName,
  oidcUser,
  oidcUsers,
} from "../cluster/dex-config.ts";
import { clusterDir, eventually } from "./cluster.ts";
import { freePort, killOnExit } from "./operator.ts";

/** Where an OpenID provider hands out tokens, and the CA its certificate chains to. */
export interface OidcIssuer {
  /** The issuer its tokens name. */
  issuer: string;
  tokenUrl: string;
  caPem: string;
}

/**
 * An ID token for a user of the test cluster's Dex, by the password grant, requested directly
 * at a token endpoint: tests need tokens from providers a careful client (openid-client's
 * discovery, as in e2e/cluster/oidc-token.ts) would refuse to talk to.
 */
export async function requestIdToken(
  at: OidcIssuer,
  user: OidcUserName,
  password: string,
  clientId = kubernetesClientId,
): Promise<string> {
  const dispatcher = new Agent({ connect: { ca: at.caPem } });
  try {
    const response = await fetch(at.tokenUrl, {
      method: "POST",
      dispatcher,
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "password",
        client_id: clientId,
        username: oidcUser(user).email,
        password,
        scope: "openid email profile groups",
      }),
    });
    const body = (await response.json()) as { id_token?: string; error?: string };
    if (!response.ok || !body.id_token)
      throw new Error(`${at.tokenUrl} answered ${response.status}: ${JSON.stringify(body)}`);
    return body.id_token;
  } finally {
    await dispatcher.destroy();
  }
}

/** The test cluster's provider, as e2e/cluster/oidc-setup.ts wrote it down. */
export interface ClusterProvider extends OidcIssuer {
  passwords: ReadonlyMap<string, string>;
}

export async function clusterProvider(): Promise<ClusterProvider> {
  const issuer = (await readFile(join(clusterDir, "oidc", "issuer"), "utf8")).trim();
  const caPem = await readFile(join(clusterDir, "pki", "oidc-ca.crt"), "utf8");
  const passwords = new Map<string, string>();
  for (const user of oidcUsers) {
    const file = join(clusterDir, "oidc", `${user.name}.password`);
    passwords.set(user.name, (await readFile(file, "utf8")).trim());
  }
  return { issuer, tokenUrl: `${issuer}/token`, caPem, passwords };
}

export interface DexProcess extends OidcIssuer {
  stop(): Promise<void>;
}

/**
 * Starts a Dex of the test's own on a free loopback port, with the given users' passwords, its
 * own CA and its own signing keys. `issuer` defaults to its own URL; a test gives the cluster
 * provider's issuer to make an impostor.
 */
export async function startDex(options: {
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
  const listen = `127.0.0.1:${await freePort()}`;
  const issuer = options.issuer ?? `https://${listen}/dex`;
  const config = dexConfig({
    issuer,
    listen,
    tlsCertFile: join(dir, "tls.crt"),
    tlsKeyFile: join(dir, "tls.key"),
    passwords: options.passwords,
  });
  writeFileSync(join(dir, "dex.json"), config, { mode: 0o600 });
  const child = killOnExit(
    spawn(join(clusterDir, "bin", "dex"), ["serve", join(dir, "dex.json")], {
      stdio: ["ignore", "ignore", "pipe"],
    }),
  );
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Dex serves under the issuer's path, wherever it listens.
  const base = `https://${listen}${new URL(issuer).pathname}`;
  const dispatcher = new Agent({ connect: { ca: ca.certPem } });
  try {
    await eventually("a test Dex to serve discovery", async () => {
      if (child.exitCode !== null) throw new Error(`dex exited ${child.exitCode}: ${stderr}`);
      const response = await fetch(`${base}/.well-known/openid-configuration`, { dispatcher });
      return response.ok;
    });
  } catch (error) {
    await stop();
    throw error;
  } finally {
    await dispatcher.destroy();
  }
  return { issuer, tokenUrl: `${base}/token`, caPem: ca.certPem, stop };
}
