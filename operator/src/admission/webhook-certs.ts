// The operator's own admission-webhook certificates: a self-managed CA and a serving
// certificate, shared by every replica through one Secret.
import "reflect-metadata";
import { createPrivateKey, randomBytes, type webcrypto, X509Certificate } from "node:crypto";
import { isIP, isIPv6 } from "node:net";
import type { CoreV1Api } from "@kubernetes/client-node";
import * as x509 from "@peculiar/x509";
import type { Logger } from "pino";
import { repeatEvery, SharedSecret } from "../kube/shared-secret.ts";

x509.cryptoProvider.set(crypto);

const ecdsaP256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const dayMs = 24 * 60 * 60 * 1000;
// Tolerates clocks that run behind the issuer's (the API server checks notBefore).
const backdateMs = 5 * 60 * 1000;

/** A certificate and its PKCS#8 private key, both PEM. */
export interface CertificateAndKey {
  certPem: string;
  keyPem: string;
}

export type CertificateAuthority = CertificateAndKey;
export type ServingCertificate = CertificateAndKey;

/** What the webhook's HTTPS server and its webhook configurations' caBundle need. */
export interface WebhookTlsMaterial {
  /** The current CA first, then earlier CAs that have not expired yet. */
  caBundlePem: string;
  certPem: string;
  keyPem: string;
}

export interface CertificateAuthorityOptions {
  commonName: string;
  validityDays: number;
  /** Issue as of this instant; defaults to now. */
  now?: Date;
}

export interface ServingCertificateOptions {
  dnsNames: string[];
  ipAddresses: string[];
  validityDays: number;
  /** Issue as of this instant; defaults to now. */
  now?: Date;
}

export async function generateCertificateAuthority(
  options: CertificateAuthorityOptions,
): Promise<CertificateAuthority> {
  const now = options.now ?? new Date();
  const keys = await crypto.subtle.generateKey(ecdsaP256, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: [{ CN: [options.commonName] }],
    notBefore: new Date(now.getTime() - backdateMs),
    notAfter: new Date(now.getTime() + options.validityDays * dayMs),
    keys,
    signingAlgorithm: ecdsaP256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: `${cert.toString("pem")}\n`, keyPem: await exportPrivateKey(keys.privateKey) };
}

/** Issues a serving certificate from ca; it never outlives the CA. */
export async function issueServingCertificate(
  ca: CertificateAuthority,
  options: ServingCertificateOptions,
): Promise<ServingCertificate> {
  const { dnsNames, ipAddresses } = options;
  const commonName = dnsNames[0] ?? ipAddresses[0];
  if (commonName === undefined) {
    throw new Error("a serving certificate needs at least one DNS name or IP address");
  }
  for (const address of ipAddresses) {
    if (isIP(address) === 0) throw new Error(`"${address}" is not an IP address`);
  }
  const now = options.now ?? new Date();
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await crypto.subtle.importKey("pkcs8", pemBody(ca.keyPem), ecdsaP256, false, [
    "sign",
  ]);
  const keys = await crypto.subtle.generateKey(ecdsaP256, true, ["sign", "verify"]);
  const notAfter = Math.min(
    now.getTime() + options.validityDays * dayMs,
    caCert.notAfter.getTime(),
  );
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    subject: [{ CN: [commonName] }],
    issuer: caCert.subjectName,
    notBefore: new Date(now.getTime() - backdateMs),
    notAfter: new Date(notAfter),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: ecdsaP256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...dnsNames.map((value) => ({ type: "dns" as const, value })),
        ...ipAddresses.map((value) => ({ type: "ip" as const, value })),
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return { certPem: `${cert.toString("pem")}\n`, keyPem: await exportPrivateKey(keys.privateKey) };
}

/** True when less than a third of the certificate's validity remains, or it does not parse. */
export function needsRenewal(certPem: string, now: Date = new Date()): boolean {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return true;
  }
  const notBefore = cert.validFromDate.getTime();
  const notAfter = cert.validToDate.getTime();
  return notAfter - now.getTime() < (notAfter - notBefore) / 3;
}

export interface WebhookCertificatesOptions {
  core: CoreV1Api;
  namespace: string;
  secretName: string;
  dnsNames: string[];
  ipAddresses: string[];
  logger: Logger;
  /** Defaults to 3650. */
  caValidityDays?: number;
  /** Defaults to 90. */
  servingValidityDays?: number;
}

/**
 * Keeps the webhook CA and serving certificate in one Secret that every replica shares,
 * so all replicas serve certificates from the same CA. Writes use the Secret's
 * resourceVersion; a replica that loses a race adopts what the winner wrote.
 *
 * CA rotation is staged: a new CA joins the bundle (ahead of the old one, which stays
 * until it expires) while the current serving certificate, signed by the old CA, is kept;
 * the next serving certificate comes from the new CA. Clients that still hold the old
 * bundle keep trusting the served certificate in the meantime.
 */
export class WebhookCertificates {
  readonly #secret: SharedSecret;
  readonly #dnsNames: string[];
  readonly #ipAddresses: string[];
  readonly #logger: Logger;
  readonly #caValidityDays: number;
  readonly #servingValidityDays: number;
  #current: WebhookTlsMaterial | undefined;

  constructor(options: WebhookCertificatesOptions) {
    if (options.dnsNames.length + options.ipAddresses.length === 0) {
      throw new Error("webhook certificates need at least one DNS name or IP address");
    }
    for (const address of options.ipAddresses) {
      if (isIP(address) === 0) {
        throw new Error(`webhook certificate IP address "${address}" is not an IP address`);
      }
    }
    this.#dnsNames = [...options.dnsNames];
    this.#ipAddresses = [...options.ipAddresses];
    this.#caValidityDays = options.caValidityDays ?? 3650;
    this.#servingValidityDays = options.servingValidityDays ?? 90;
    this.#logger = options.logger.child({
      component: "webhook-certs",
      secret: `${options.namespace}/${options.secretName}`,
    });
    this.#secret = new SharedSecret({
      core: options.core,
      namespace: options.namespace,
      name: options.secretName,
      type: "kubernetes.io/tls",
      what: "webhook certificate",
      logger: this.#logger,
    });
  }

  /** Reads the shared Secret, creating or renewing what it holds as needed. */
  async ensure(): Promise<WebhookTlsMaterial> {
    const data = await this.#secret.converge(async (stored) => {
      const { data, reasons } = await this.#renew(stored ?? {}, new Date());
      if (stored && reasons.length === 0) return { result: data };
      const message = stored
        ? "renewed webhook certificates"
        : "created the webhook certificate Secret";
      return { result: data, write: { data, message, details: { reasons } } };
    });
    return this.#remember(data);
  }

  /**
   * Re-runs ensure every intervalMs and calls onChange when the material differs from what
   * this instance last handed out. Failures are logged and retried on the next tick.
   * Returns a function that stops the loop.
   */
  watch(onChange: (material: WebhookTlsMaterial) => void, intervalMs = 60_000): () => void {
    let known = this.#current;
    return repeatEvery(intervalMs, async () => {
      let material: WebhookTlsMaterial;
      try {
        material = await this.ensure();
      } catch (error) {
        this.#logger.warn({ err: error }, "refreshing webhook certificates failed");
        return;
      }
      if (sameMaterial(known, material)) return;
      known = material;
      try {
        onChange(material);
      } catch (error) {
        this.#logger.error({ err: error }, "applying new webhook certificates failed");
      }
    });
  }

  /** Computes the Secret data to hold now; reasons is empty when it matches what is stored. */
  async #renew(
    stored: Record<string, string>,
    now: Date,
  ): Promise<{ data: TlsSecretData; reasons: string[] }> {
    const reasons: string[] = [];

    let ca = usableCertificateAuthority(stored["ca.crt"], stored["ca.key"]);
    if (ca === undefined || needsRenewal(ca.certPem, now)) {
      reasons.push(ca === undefined ? "no usable CA" : "the CA is due for renewal");
      ca = await generateCertificateAuthority({
        commonName: `langgraph-jit-webhook-ca@${Math.floor(now.getTime() / 1000)}`,
        validityDays: this.#caValidityDays,
        now,
      });
    }

    // Earlier CAs stay trusted until they expire: replicas that have not yet reloaded
    // still serve certificates they signed.
    const bundle = uniqueCertificates([
      ca.certPem,
      ...splitPemCertificates(stored["ca-bundle.crt"] ?? ""),
      ...splitPemCertificates(stored["ca.crt"] ?? ""),
    ]).filter((pem) => {
      const cert = new X509Certificate(pem);
      return cert.ca && cert.validToDate > now;
    });

    let serving = usableKeyPair(stored["tls.crt"], stored["tls.key"]);
    const servingProblem = this.#servingProblem(serving, bundle, now);
    if (serving === undefined || servingProblem !== undefined) {
      reasons.push(servingProblem ?? "no usable serving certificate");
      serving = await issueServingCertificate(ca, {
        dnsNames: this.#dnsNames,
        ipAddresses: this.#ipAddresses,
        validityDays: this.#servingValidityDays,
        now,
      });
    }

    const data: TlsSecretData = {
      "ca.crt": ca.certPem,
      "ca.key": ca.keyPem,
      "ca-bundle.crt": bundle.join(""),
      "tls.crt": serving.certPem,
      "tls.key": serving.keyPem,
    };
    const stale = Object.entries(data).filter(([key, value]) => stored[key] !== value);
    if (reasons.length === 0 && stale.length > 0) {
      reasons.push(`out-of-date keys: ${stale.map(([key]) => key).join(", ")}`);
    }
    return { data, reasons };
  }

  #servingProblem(
    serving: CertificateAndKey | undefined,
    bundle: string[],
    now: Date,
  ): string | undefined {
    if (serving === undefined) return "no usable serving certificate";
    if (needsRenewal(serving.certPem, now)) return "the serving certificate is due for renewal";
    if (!this.#covers(serving.certPem)) {
      return "the serving certificate does not cover the configured names";
    }
    if (!signedByOneOf(serving.certPem, bundle)) {
      return "the serving certificate is not signed by a CA in the bundle";
    }
    return undefined;
  }

  #covers(certPem: string): boolean {
    const names = subjectAlternativeNames(certPem);
    return (
      this.#dnsNames.every((name) => names.dnsNames.has(name.toLowerCase())) &&
      this.#ipAddresses.every((address) => names.ipAddresses.has(canonicalIp(address)))
    );
  }

  #remember(data: TlsSecretData): WebhookTlsMaterial {
    this.#current = {
      caBundlePem: data["ca-bundle.crt"],
      certPem: data["tls.crt"],
      keyPem: data["tls.key"],
    };
    return this.#current;
  }
}

type TlsSecretData = {
  "ca.crt": string;
  "ca.key": string;
  "ca-bundle.crt": string;
  "tls.crt": string;
  "tls.key": string;
};

function sameMaterial(a: WebhookTlsMaterial | undefined, b: WebhookTlsMaterial): boolean {
  return (
    a !== undefined &&
    a.caBundlePem === b.caBundlePem &&
    a.certPem === b.certPem &&
    a.keyPem === b.keyPem
  );
}

/** The pair when the certificate parses, is a CA, and the key belongs to it. */
function usableCertificateAuthority(
  certPem: string | undefined,
  keyPem: string | undefined,
): CertificateAndKey | undefined {
  const pair = usableKeyPair(certPem, keyPem);
  return pair !== undefined && isCertificateAuthority(pair.certPem) ? pair : undefined;
}

/** The pair when the certificate and key parse and belong together. */
function usableKeyPair(
  certPem: string | undefined,
  keyPem: string | undefined,
): CertificateAndKey | undefined {
  if (!certPem || !keyPem) return undefined;
  try {
    const cert = new X509Certificate(certPem);
    return cert.checkPrivateKey(createPrivateKey(keyPem)) ? { certPem, keyPem } : undefined;
  } catch {
    return undefined;
  }
}

function isCertificateAuthority(certPem: string): boolean {
  try {
    return new X509Certificate(certPem).ca;
  } catch {
    return false;
  }
}

function signedByOneOf(certPem: string, caPems: string[]): boolean {
  const cert = new X509Certificate(certPem);
  return caPems.some((caPem) => {
    const ca = new X509Certificate(caPem);
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  });
}

function splitPemCertificates(pem: string): string[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (block) => `${block}\n`,
  );
}

function uniqueCertificates(pems: string[]): string[] {
  const seen = new Set<string>();
  return pems.filter((pem) => {
    let fingerprint: string;
    try {
      fingerprint = new X509Certificate(pem).fingerprint256;
    } catch {
      return false;
    }
    if (seen.has(fingerprint)) return false;
    seen.add(fingerprint);
    return true;
  });
}

function subjectAlternativeNames(certPem: string): {
  dnsNames: Set<string>;
  ipAddresses: Set<string>;
} {
  const items =
    new x509.X509Certificate(certPem).getExtension(x509.SubjectAlternativeNameExtension)?.names
      .items ?? [];
  return {
    dnsNames: new Set(items.filter((i) => i.type === "dns").map((i) => i.value.toLowerCase())),
    ipAddresses: new Set(items.filter((i) => i.type === "ip").map((i) => canonicalIp(i.value))),
  };
}

/** One spelling per address, so "::1" and "0:0:0:0:0:0:0:1" compare equal. */
function canonicalIp(address: string): string {
  return isIPv6(address) ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString("hex");
}

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) [A-Z ]+-----|\s/g, ""), "base64");
}

async function exportPrivateKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey("pkcs8", key));
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN PRIVATE KEY-----\n${lines.join("\n")}\n-----END PRIVATE KEY-----\n`;
}
