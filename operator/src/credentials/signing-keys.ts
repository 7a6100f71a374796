// The ES256 keys the operator signs run JWTs with, shared by every replica through one
// Secret, and the JWKS that verifiers fetch from /.well-known/jwks.json.
import type { CoreV1Api } from "@kubernetes/client-node";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  SignJWT,
} from "jose";
import type { Logger } from "pino";
import { errorMessage } from "../../../api/errors.ts";
import { repeatEvery, SharedSecret } from "../kube/shared-secret.ts";

const algorithm = "ES256";
const hourMs = 60 * 60 * 1000;
/** The Secret key that holds the key document. */
export const keyDocumentKey = "keys.json";

/** One entry of the key document; the document lists them newest first. */
export interface SigningKey {
  /** RFC 7638 thumbprint (SHA-256) of publicJwk. */
  kid: string;
  /** RFC 3339. */
  createdAt: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

/** The key document, or the Secret holding it, cannot be used; it is never overwritten. */
export class MalformedKeyDocumentError extends Error {
  override name = "MalformedKeyDocumentError";
}

/** Generates a P-256 key pair whose kid is its public key's RFC 7638 thumbprint. */
export async function generateSigningKey(now: Date = new Date()): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair(algorithm, { extractable: true });
  const { kty, crv, x, y, d } = await exportJWK(privateKey);
  const publicJwk = { kty, crv, x, y };
  return {
    kid: await calculateJwkThumbprint(publicJwk),
    createdAt: now.toISOString(),
    privateJwk: { kty, crv, x, y, d },
    publicJwk,
  };
}

/**
 * Parses and checks a key document: every entry must be a usable P-256 key pair whose kid
 * is its thumbprint. Returns the keys newest first. Throws MalformedKeyDocumentError.
 */
export async function parseKeyDocument(text: string): Promise<SigningKey[]> {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new MalformedKeyDocumentError(`it is not JSON (${errorMessage(error)})`);
  }
  if (!Array.isArray(document)) {
    throw new MalformedKeyDocumentError(`it is ${describe(document)}, not a list of keys`);
  }
  const keys: SigningKey[] = [];
  for (const [index, entry] of document.entries()) {
    keys.push(await parseKeyEntry(entry, `keys[${index}]`));
  }
  const seen = new Set<string>();
  for (const [index, key] of keys.entries()) {
    if (seen.has(key.kid)) {
      throw new MalformedKeyDocumentError(`keys[${index}].kid "${key.kid}" appears twice`);
    }
    seen.add(key.kid);
  }
  // Stable: ties keep their order.
  return keys.sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
}

export function serializeKeyDocument(keys: readonly SigningKey[]): string {
  return `${JSON.stringify(keys, null, 2)}\n`;
}

/** True when there is no key, or the newest is at least rotateAfterMs old. */
export function needsRotation(
  keys: readonly SigningKey[],
  now: Date,
  rotateAfterMs: number,
): boolean {
  const newest = keys[0];
  return newest === undefined || ageMs(newest, now) >= rotateAfterMs;
}

/** Drops keys older than retireAfterMs, except the newest, which is always kept. */
export function retireKeys(
  keys: readonly SigningKey[],
  now: Date,
  retireAfterMs: number,
): SigningKey[] {
  return keys.filter((key, index) => index === 0 || ageMs(key, now) <= retireAfterMs);
}

export interface SigningKeysOptions {
  core: CoreV1Api;
  namespace: string;
  secretName: string;
  logger: Logger;
  /** A new key becomes the signing key once the newest is this old. Defaults to 24 h. */
  rotateAfterMs?: number;
  /**
   * Keys older than this leave the JWKS (the newest never does). Must exceed rotateAfterMs
   * by the longest token lifetime. Defaults to 48 h.
   */
  retireAfterMs?: number;
}

export interface SignOptions {
  issuer: string;
  audience: string | string[];
  subject: string;
  /** Becomes exp, in whole seconds rounded down so the token never outlives it. */
  expiresAt: Date;
  jti: string;
}

/**
 * Keeps the signing keys in one Secret that every replica shares, so a token signed by any
 * replica verifies against any replica's JWKS. Writes use the Secret's resourceVersion; a
 * replica that loses a race re-reads what the winner wrote. A malformed Secret is reported,
 * never overwritten: replacing it would invalidate every token already issued.
 */
export class SigningKeys {
  readonly #secret: SharedSecret;
  readonly #logger: Logger;
  readonly #rotateAfterMs: number;
  readonly #retireAfterMs: number;
  #keys: SigningKey[] = [];
  #signingKey: { kid: string; key: CryptoKey } | undefined;

  constructor(options: SigningKeysOptions) {
    const rotateAfterMs = options.rotateAfterMs ?? 24 * hourMs;
    const retireAfterMs = options.retireAfterMs ?? 48 * hourMs;
    if (!Number.isFinite(rotateAfterMs) || rotateAfterMs < 0) {
      throw new Error(`signing key rotateAfterMs ${rotateAfterMs} is not a duration`);
    }
    if (!Number.isFinite(retireAfterMs) || retireAfterMs <= rotateAfterMs) {
      throw new Error(
        `signing key retireAfterMs ${retireAfterMs} must exceed rotateAfterMs ${rotateAfterMs}: ` +
          "otherwise a key leaves the JWKS while tokens it just signed are live",
      );
    }
    this.#rotateAfterMs = rotateAfterMs;
    this.#retireAfterMs = retireAfterMs;
    this.#logger = options.logger.child({
      component: "signing-keys",
      secret: `${options.namespace}/${options.secretName}`,
    });
    this.#secret = new SharedSecret({
      core: options.core,
      namespace: options.namespace,
      name: options.secretName,
      type: "Opaque",
      what: "signing key",
      logger: this.#logger,
    });
  }

  /** Reads the shared Secret, creating it, rotating or retiring keys as needed. */
  async ensure(): Promise<void> {
    const keys = await this.#secret.converge(async (stored) => {
      const now = new Date();
      const current = stored ? await this.#parse(stored[keyDocumentKey]) : [];
      const rotated = needsRotation(current, now, this.#rotateAfterMs);
      const keys = retireKeys(
        rotated ? [await generateSigningKey(now), ...current] : current,
        now,
        this.#retireAfterMs,
      );
      const retired = current.filter((key) => !keys.includes(key)).map((key) => key.kid);
      if (stored && !rotated && retired.length === 0) return { result: keys };
      const message = !stored
        ? "created the signing key Secret"
        : rotated
          ? "rotated the signing key"
          : "retired signing keys";
      return {
        result: keys,
        write: {
          data: { [keyDocumentKey]: serializeKeyDocument(keys) },
          message,
          details: { kid: keys[0]?.kid, rotated, retired },
        },
      };
    });
    await this.#remember(keys);
  }

  /** Signs claims with the newest key; the options' registered claims override claims'. */
  async sign(claims: JWTPayload, options: SignOptions): Promise<string> {
    const signingKey = this.#signingKey;
    if (signingKey === undefined) {
      throw new Error("no signing key loaded yet: SigningKeys.ensure() has not succeeded");
    }
    const expiresAtMs = options.expiresAt.getTime();
    if (Number.isNaN(expiresAtMs)) throw new Error("token expiresAt is not a valid date");
    const issuedAt = Math.floor(Date.now() / 1000);
    const expiresAt = Math.floor(expiresAtMs / 1000);
    if (expiresAt <= issuedAt) {
      throw new Error(
        `token expiresAt ${options.expiresAt.toISOString()} is not in the future: ` +
          "refusing to sign a token that is already expired",
      );
    }
    return new SignJWT(claims)
      .setProtectedHeader({ alg: algorithm, kid: signingKey.kid, typ: "JWT" })
      .setIssuer(options.issuer)
      .setAudience(options.audience)
      .setSubject(options.subject)
      .setJti(options.jti)
      .setIssuedAt(issuedAt)
      .setExpirationTime(expiresAt)
      .sign(signingKey.key);
  }

  /** The public keys of every current key, newest first, for /.well-known/jwks.json. */
  jwks(): JSONWebKeySet {
    return {
      keys: this.#keys.map((key) => ({
        ...key.publicJwk,
        kid: key.kid,
        alg: algorithm,
        use: "sig",
      })),
    };
  }

  /**
   * Re-runs ensure every intervalMs, picking up rotations other replicas made. Failures are
   * logged and retried on the next tick. Returns a function that stops the loop.
   */
  watch(intervalMs = 60_000): () => void {
    return repeatEvery(intervalMs, async () => {
      try {
        await this.ensure();
      } catch (error) {
        // A malformed Secret needs a person; anything else is likely transient.
        const level = error instanceof MalformedKeyDocumentError ? "error" : "warn";
        this.#logger[level]({ err: error }, "refreshing signing keys failed");
      }
    });
  }

  /** The stored keys; an empty or missing document (a placeholder Secret) holds none. */
  async #parse(text = ""): Promise<SigningKey[]> {
    if (text.trim() === "") return [];
    try {
      return await parseKeyDocument(text);
    } catch (error) {
      if (!(error instanceof MalformedKeyDocumentError)) throw error;
      throw new MalformedKeyDocumentError(
        `signing key Secret ${this.#secret.ref} has a malformed ` +
          `"${keyDocumentKey}": ${error.message}; fix or delete the Secret ` +
          "(deleting it invalidates every token signed so far)",
        { cause: error },
      );
    }
  }

  async #remember(keys: SigningKey[]): Promise<void> {
    const newest = keys[0];
    if (newest === undefined) throw new Error("a key set always holds its newest key");
    if (this.#signingKey?.kid !== newest.kid) {
      const key = await importJWK(newest.privateJwk, algorithm);
      if (key instanceof Uint8Array) throw new Error("an ES256 JWK imported as a secret key");
      this.#signingKey = { kid: newest.kid, key };
    }
    this.#keys = keys;
  }
}

async function parseKeyEntry(entry: unknown, where: string): Promise<SigningKey> {
  if (!isRecord(entry)) {
    throw new MalformedKeyDocumentError(`${where} is ${describe(entry)}, not an object`);
  }
  const { kid, createdAt, privateJwk, publicJwk } = entry;
  if (typeof kid !== "string" || kid === "") {
    throw new MalformedKeyDocumentError(`${where}.kid is missing or not a string`);
  }
  if (typeof createdAt !== "string" || !isRfc3339(createdAt)) {
    throw new MalformedKeyDocumentError(
      `${where}.createdAt ${JSON.stringify(createdAt)} is not an RFC 3339 timestamp`,
    );
  }
  const publicKey = ecJwk(publicJwk, `${where}.publicJwk`, false);
  const privateKey = ecJwk(privateJwk, `${where}.privateJwk`, true);
  if (privateKey.x !== publicKey.x || privateKey.y !== publicKey.y) {
    throw new MalformedKeyDocumentError(`${where}.privateJwk and publicJwk are different keys`);
  }
  const thumbprint = await calculateJwkThumbprint(publicKey);
  if (kid !== thumbprint) {
    throw new MalformedKeyDocumentError(
      `${where}.kid "${kid}" is not the thumbprint of its public key ("${thumbprint}")`,
    );
  }
  try {
    // WebCrypto checks the point is on the curve and that d belongs to it.
    await importJWK(privateKey, algorithm);
  } catch (error) {
    throw new MalformedKeyDocumentError(
      `${where}.privateJwk is not a usable P-256 key (${errorMessage(error)})`,
    );
  }
  return { kid, createdAt, privateJwk: privateKey, publicJwk: publicKey };
}

/** The EC P-256 members of a JWK; the private one with d, the public one without. */
function ecJwk(value: unknown, where: string, isPrivate: boolean): JWK {
  if (!isRecord(value)) {
    throw new MalformedKeyDocumentError(`${where} is ${describe(value)}, not a JWK`);
  }
  if (value.kty !== "EC" || value.crv !== "P-256") {
    throw new MalformedKeyDocumentError(
      `${where} is not an EC P-256 key (kty ${JSON.stringify(value.kty)}, ` +
        `crv ${JSON.stringify(value.crv)})`,
    );
  }
  const members = isPrivate ? (["x", "y", "d"] as const) : (["x", "y"] as const);
  for (const member of members) {
    const coordinate = value[member];
    if (typeof coordinate !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(coordinate)) {
      throw new MalformedKeyDocumentError(
        `${where}.${member} is missing or not a 32-byte base64url value`,
      );
    }
  }
  if (!isPrivate && "d" in value) {
    throw new MalformedKeyDocumentError(`${where} holds a private key (d)`);
  }
  const jwk: JWK = { kty: "EC", crv: "P-256", x: value.x as string, y: value.y as string };
  if (isPrivate) jwk.d = value.d as string;
  return jwk;
}

function isRfc3339(value: string): boolean {
  return (
    /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(value) &&
    !Number.isNaN(Date.parse(value))
  );
}

function ageMs(key: SigningKey, now: Date): number {
  return now.getTime() - Date.parse(key.createdAt);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}
