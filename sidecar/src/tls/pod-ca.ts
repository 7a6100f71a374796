// A certificate authority of the sidecar's own, one per pod, made at start: it issues the
// certificates the sidecar presents when it intercepts a CONNECT to a granted HTTPS host. Its
// private key stays a KeyObject inside createPodCa: never exported, written or logged.
// The graph container trusts it through the bundle trustBundle returns.

import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";
import { createSecureContext, rootCertificates, type SecureContext } from "node:tls";
import { BoundedCache } from "../../../api/bounded-cache.ts";
import * as der from "./der.ts";

const minuteMs = 60_000;
const dayMs = 24 * 60 * minuteMs;
// Tolerates a graph container whose clock runs behind the sidecar's.
const backdateMs = 5 * minuteMs;
/**
 * A run lasts at most 168h (the CRDs' cap on maxDuration); the eighth day covers the time
 * between the sidecar's start and the run's clock starting, so no run outlives its pod's CA.
 */
export const defaultCaLifetimeMs = 8 * dayMs;
// A run grants at most 64 connections (the CRD's maxItems), one host each; a context holds
// about 80 kB, so the cap bounds memory should a host ever arrive spelled several ways.
const maxCachedContexts = 64;
// X.520's upper bound for a commonName.
const maxCommonNameLength = 64;

const oids = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
} as const;

// keyUsage's named bits (RFC 5280 4.2.1.3).
const keyUsageBits = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

export interface PodCaOptions {
  /** The run or pod the CA serves; it names the CA: "langgraph-jit pod CA <name>". */
  name?: string;
  /** How long the CA, and so every certificate it issues, stays valid; defaults to 8 days. */
  lifetimeMs?: number;
  /** Issue the CA as of this instant; defaults to now. */
  now?: Date;
}

/** The pod's CA as the rest of the sidecar sees it: its certificate and what it issues. */
export interface PodCa {
  /** The self-signed CA certificate, PEM. */
  readonly certificatePem: string;
  /**
   * A TLS server context presenting a certificate for host (a DNS name or an IP literal),
   * issued by this CA and chained to it; one per host, cached.
   */
  secureContextFor(host: string): SecureContext;
}

export function createPodCa(options: PodCaOptions = {}): PodCa {
  const issuedAt = (options.now ?? new Date()).getTime();
  const lifetimeMs = options.lifetimeMs ?? defaultCaLifetimeMs;
  if (!Number.isFinite(lifetimeMs) || lifetimeMs <= 0) {
    throw new RangeError(`a pod CA's lifetime must be a positive number of ms, not ${lifetimeMs}`);
  }
  const notBefore = wholeSecond(issuedAt - backdateMs);
  const notAfter = wholeSecond(issuedAt + lifetimeMs);

  const caKeys = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const caKeyId = keyIdentifier(caKeys.publicKey);
  const caCommonName = options.name
    ? `langgraph-jit pod CA ${options.name}`
    : "langgraph-jit pod CA";
  const caName = distinguishedName(caCommonName.slice(0, maxCommonNameLength));
  const certificatePem = signedCertificate(
    {
      issuer: caName,
      subject: caName,
      notBefore,
      notAfter,
      publicKey: caKeys.publicKey,
      extensions: [
        extension(
          oids.basicConstraints,
          true,
          der.sequence(der.boolean(true), der.smallInteger(0)),
        ),
        extension(
          oids.keyUsage,
          true,
          der.namedBits([keyUsageBits.keyCertSign, keyUsageBits.cRLSign]),
        ),
        extension(oids.subjectKeyIdentifier, false, der.octetString(caKeyId)),
      ],
    },
    caKeys.privateKey,
  );

  // Leaf keys live in the same memory as the CA's, so a key per host would isolate nothing.
  const leafKeys = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const leafKeyId = keyIdentifier(leafKeys.publicKey);
  // createSecureContext takes no KeyObject; this PEM is the leaves' key, never the CA's.
  const leafKeyPem = leafKeys.privateKey.export({ type: "pkcs8", format: "pem" });

  function issueLeaf(host: ParsedHost): string {
    const now = Date.now();
    if (now >= notAfter.getTime()) {
      throw new Error(`the pod CA expired at ${notAfter.toISOString()}; restart the pod`);
    }
    // An empty subject obliges a critical subjectAltName (RFC 5280 4.2.1.6).
    const fitsCommonName = host.name.length <= maxCommonNameLength;
    return signedCertificate(
      {
        issuer: caName,
        subject: fitsCommonName ? distinguishedName(host.name) : der.sequence(),
        notBefore: new Date(Math.max(notBefore.getTime(), wholeSecond(now - backdateMs).getTime())),
        notAfter,
        publicKey: leafKeys.publicKey,
        extensions: [
          extension(oids.basicConstraints, true, der.sequence()),
          extension(oids.keyUsage, true, der.namedBits([keyUsageBits.digitalSignature])),
          extension(oids.extKeyUsage, false, der.sequence(der.objectIdentifier(oids.serverAuth))),
          extension(oids.subjectAltName, !fitsCommonName, der.sequence(host.generalName)),
          extension(oids.subjectKeyIdentifier, false, der.octetString(leafKeyId)),
          extension(oids.authorityKeyIdentifier, false, der.sequence(der.implicit(0, caKeyId))),
        ],
      },
      caKeys.privateKey,
    );
  }

  const contexts = new BoundedCache<string, SecureContext>({ maxEntries: maxCachedContexts });
  return Object.freeze({
    certificatePem,
    secureContextFor(host: string): SecureContext {
      const parsed = parseHost(host);
      let context = contexts.get(parsed.name);
      if (context === undefined) {
        context = createSecureContext({
          key: leafKeyPem,
          cert: issueLeaf(parsed) + certificatePem,
        });
        contexts.set(parsed.name, context);
      }
      return context;
    },
  });
}

/**
 * The graph container's CA file (SSL_CERT_FILE and the like): the pod CA, then Node's bundled
 * public roots, since pointing a client at this file replaces its system store.
 */
export function trustBundle(ca: Pick<PodCa, "certificatePem">): string {
  return [ca.certificatePem, ...rootCertificates]
    .map((pem) => (pem.endsWith("\n") ? pem : `${pem}\n`))
    .join("");
}

interface CertificateFields {
  issuer: der.Der;
  subject: der.Der;
  notBefore: Date;
  notAfter: Date;
  publicKey: KeyObject;
  extensions: der.Der[];
}

/** An X.509 v3 certificate (RFC 5280 4.1) signed with ECDSA P-256 and SHA-256, PEM. */
function signedCertificate(fields: CertificateFields, signingKey: KeyObject): string {
  const algorithm = der.sequence(der.objectIdentifier(oids.ecdsaWithSha256));
  const tbsCertificate = der.sequence(
    der.explicit(0, der.smallInteger(2)), // v3
    der.unsignedInteger(serialNumber()),
    algorithm,
    fields.issuer,
    der.sequence(der.time(fields.notBefore), der.time(fields.notAfter)),
    fields.subject,
    fields.publicKey.export({ type: "spki", format: "der" }),
    der.explicit(3, der.sequence(...fields.extensions)),
  );
  const signature = sign("sha256", tbsCertificate, { key: signingKey, dsaEncoding: "der" });
  const body = der.sequence(tbsCertificate, algorithm, der.bitString(signature)).toString("base64");
  return `-----BEGIN CERTIFICATE-----\n${body.match(/.{1,64}/g)?.join("\n")}\n-----END CERTIFICATE-----\n`;
}

function extension(id: string, critical: boolean, value: der.Der): der.Der {
  return der.sequence(
    der.objectIdentifier(id),
    ...(critical ? [der.boolean(true)] : []), // DER omits the default, false
    der.octetString(value),
  );
}

function distinguishedName(commonName: string): der.Der {
  return der.sequence(
    der.set(der.sequence(der.objectIdentifier(oids.commonName), der.utf8String(commonName))),
  );
}

/** 16 random octets, the top bit clear and the next set: positive, and always 16 long. */
function serialNumber(): Buffer {
  const serial = randomBytes(16);
  serial[0] = 0x40 | ((serial[0] ?? 0) & 0x3f);
  return serial;
}

/** RFC 5280 4.2.1.2's method 1: SHA-1 of the subjectPublicKey bits (the EC point). */
function keyIdentifier(publicKey: KeyObject): Buffer {
  const { x, y } = publicKey.export({ format: "jwk" });
  const point = Buffer.concat([
    Buffer.of(0x04), // uncompressed
    Buffer.from(x ?? "", "base64url"),
    Buffer.from(y ?? "", "base64url"),
  ]);
  return createHash("sha1").update(point).digest();
}

function wholeSecond(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

interface ParsedHost {
  /** The cache key and commonName: lowercased, an IPv6 literal without brackets. */
  name: string;
  /** The subjectAltName entry: dNSName [2] or iPAddress [7]. */
  generalName: der.Der;
}

const dnsLabel = "[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?";
const dnsName = new RegExp(`^(?=.{1,253}$)${dnsLabel}(?:\\.${dnsLabel})*$`);

function parseHost(host: string): ParsedHost {
  // Brackets, as in a URL's host, may only hold an IPv6 literal.
  const bracketed = /^\[(.*)\]$/.exec(host);
  const name = (bracketed?.[1] ?? host).toLowerCase();
  if (isIPv6(name) && !name.includes("%")) {
    return { name, generalName: der.implicit(7, ipv6Bytes(name)) };
  }
  if (!bracketed && isIPv4(name)) {
    return { name, generalName: der.implicit(7, Buffer.from(name.split(".").map(Number))) };
  }
  if (!bracketed && dnsName.test(name)) {
    return { name, generalName: der.implicit(2, Buffer.from(name, "ascii")) };
  }
  throw new Error(
    `cannot issue a certificate for host ${JSON.stringify(host)}: it is neither a DNS name nor an IP address`,
  );
}

/** The 16 octets of an IPv6 literal that isIPv6 accepted ("::" and a dotted tail allowed). */
function ipv6Bytes(address: string): Buffer {
  const groups = (part: string | undefined): number[] =>
    !part
      ? []
      : part.split(":").flatMap((group) => {
          if (!group.includes(".")) return [Number.parseInt(group, 16)];
          const [a = 0, b = 0, c = 0, d = 0] = group.split(".").map(Number);
          return [(a << 8) | b, (c << 8) | d];
        });
  const [head, tail] = address.split("::");
  const front = groups(head);
  const back = groups(tail);
  const zeros = address.includes("::") ? 8 - front.length - back.length : 0;
  const bytes = Buffer.alloc(16);
  [...front, ...Array<number>(zeros).fill(0), ...back].forEach((group, index) => {
    bytes.writeUInt16BE(group, index * 2);
  });
  return bytes;
}
