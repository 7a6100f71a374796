// A Secret that every operator replica reads and may rewrite (webhook certificates, signing
// keys): one copy for all, created by whichever replica comes first, changed only with the
// resourceVersion that was read, so a replica that loses a race re-reads and adopts the winner's.
import type { CoreV1Api } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { statusOf } from "./api-errors.ts";

const maxWriteAttempts = 5;

/** What a plan decided: the result to hand out and, when the Secret must change, what to write. */
export interface SecretPlan<T> {
  result: T;
  write?: { data: Record<string, string>; message: string; details?: Record<string, unknown> };
}

export interface SharedSecretOptions {
  core: CoreV1Api;
  namespace: string;
  name: string;
  type: string;
  /** What it holds, for messages: "webhook certificate", "signing key". */
  what: string;
  logger: Logger;
}

export class SharedSecret {
  readonly #o: SharedSecretOptions;
  readonly ref: string;

  constructor(options: SharedSecretOptions) {
    this.#o = options;
    this.ref = `${options.namespace}/${options.name}`;
  }

  /**
   * Reads the Secret (decoded; undefined when absent), lets plan decide, and writes what it
   * asks for. Keys the plan does not mention are kept. A lost race re-reads and plans again.
   */
  async converge<T>(
    plan: (stored: Record<string, string> | undefined) => Promise<SecretPlan<T>>,
  ): Promise<T> {
    const { core, namespace, name, type, logger } = this.#o;
    for (let attempt = 1; attempt <= maxWriteAttempts; attempt++) {
      const secret = await core
        .readNamespacedSecret({ name, namespace })
        .catch((error: unknown) => {
          if (statusOf(error) === 404) return undefined;
          throw this.#apiError("reading", error);
        });
      const stored = secret ? decode(secret.data) : undefined;
      const { result, write } = await plan(stored);
      if (!write) return result;
      const data = encode({ ...stored, ...write.data });
      try {
        if (secret) {
          // Carries the resourceVersion read above: a concurrent write makes this a 409.
          await core.replaceNamespacedSecret({ name, namespace, body: { ...secret, data } });
        } else {
          await core.createNamespacedSecret({
            namespace,
            body: {
              metadata: {
                name,
                namespace,
                labels: { "app.kubernetes.io/managed-by": "langgraph-jit" },
              },
              type,
              data,
            },
          });
        }
        logger.info(write.details ?? {}, write.message);
        return result;
      } catch (error) {
        if (statusOf(error) !== 409) throw this.#apiError(secret ? "updating" : "creating", error);
        logger.debug("another replica wrote the Secret first; re-reading");
      }
    }
    throw new Error(
      `${this.#o.what} Secret ${this.ref} kept changing under concurrent writers: ` +
        `gave up after ${maxWriteAttempts} attempts`,
    );
  }

  #apiError(action: string, error: unknown): Error {
    const status = statusOf(error);
    return new Error(
      `${action} ${this.#o.what} Secret ${this.ref} failed${status === undefined ? "" : ` with HTTP ${status}`}`,
      { cause: error },
    );
  }
}

/** Runs tick every intervalMs, one at a time, without keeping the process alive; returns stop. */
export function repeatEvery(intervalMs: number, tick: () => Promise<void>): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    timer = setTimeout(async () => {
      await tick();
      if (!stopped) schedule();
    }, intervalMs);
    timer.unref();
  };
  schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function decode(data: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(data ?? {}).map(([key, value]) => [
      key,
      Buffer.from(value, "base64").toString("utf8"),
    ]),
  );
}

function encode(data: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(data).map(([key, value]) => [key, Buffer.from(value).toString("base64")]),
  );
}
