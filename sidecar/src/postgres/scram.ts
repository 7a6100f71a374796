// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL runs it: no channel
// binding, the user name left to the startup packet, and the server's signature checked so a
// server that does not know the password cannot pass for the real one.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

export const scramMechanism = "SCRAM-SHA-256";
/** More iterations than this is a server making the sidecar burn CPU; PostgreSQL uses 4096. */
const maxIterations = 100_000;

export class ScramError extends Error {
  override name = "ScramError";
}

export interface ScramExchange {
  /** The SASLInitialResponse's data: the client-first message. */
  clientFirst: string;
  /** From the server-first message: the client-final message. */
  clientFinal(serverFirst: string): string;
  /** Checks the server-final message's signature; throws when it does not match. */
  verifyServerFinal(serverFinal: string): void;
}

export function startScram(password: string): ScramExchange {
  const clientNonce = randomBytes(18).toString("base64");
  const clientFirstBare = `n=,r=${clientNonce}`;
  let serverSignature: Buffer | undefined;
  return {
    clientFirst: `n,,${clientFirstBare}`,
    clientFinal(serverFirst) {
      const attributes = scramAttributes(serverFirst);
      const nonce = attributes.get("r") ?? "";
      const salt = Buffer.from(attributes.get("s") ?? "", "base64");
      const iterations = Number(attributes.get("i"));
      if (!nonce.startsWith(clientNonce) || nonce.length === clientNonce.length)
        throw new ScramError("the server's nonce does not extend the client's");
      if (salt.length === 0) throw new ScramError("the server sent no salt");
      if (!Number.isInteger(iterations) || iterations < 1 || iterations > maxIterations)
        throw new ScramError(`the server asks for ${attributes.get("i")} iterations`);
      const withoutProof = `c=biws,r=${nonce}`;
      const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
      const salted = pbkdf2Sync(password.normalize("NFKC"), salt, iterations, 32, "sha256");
      const clientKey = hmac(salted, "Client Key");
      const storedKey = createHash("sha256").update(clientKey).digest();
      const signature = hmac(storedKey, authMessage);
      const proof = Buffer.alloc(clientKey.length);
      for (let i = 0; i < proof.length; i++) proof[i] = (clientKey[i] ?? 0) ^ (signature[i] ?? 0);
      serverSignature = hmac(hmac(salted, "Server Key"), authMessage);
      return `${withoutProof},p=${proof.toString("base64")}`;
    },
    verifyServerFinal(serverFinal) {
      const attributes = scramAttributes(serverFinal);
      const error = attributes.get("e");
      if (error) throw new ScramError(`the server refused: ${error}`);
      const signature = Buffer.from(attributes.get("v") ?? "", "base64");
      if (
        !serverSignature ||
        signature.length !== serverSignature.length ||
        !timingSafeEqual(signature, serverSignature)
      )
        throw new ScramError(
          "the server's signature does not match: it does not know the password",
        );
    },
  };
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac("sha256", key).update(text).digest();
}

function scramAttributes(message: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const part of message.split(",")) {
    const equals = part.indexOf("=");
    if (equals === 1) attributes.set(part.slice(0, 1), part.slice(2));
  }
  return attributes;
}
