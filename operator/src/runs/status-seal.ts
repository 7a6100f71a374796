// The operator's seal on what it decides: an HMAC, with a key only its replicas hold, over a
// run's phase, start, deadline and Job, and on each Job it creates. Anyone who can write a
// run's status or create Jobs could otherwise set Running, move a deadline, or slip in a Job
// of their own under the run's name; the operator trusts none of that without its seal.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { CoreV1Api, V1Job } from "@kubernetes/client-node";
import type { Logger } from "pino";
import {
  annotations,
  type LangGraphRun,
  type LangGraphRunStatus,
  RunPhase,
} from "../../../api/v1alpha1.ts";
import { SharedSecret } from "../kube/shared-secret.ts";

const keyField = "seal.key";
const keyBytes = 32;
const version = "v1";
/** Phases only the operator's decision reaches; a status claiming one must carry its seal. */
const decidedPhases: ReadonlySet<string> = new Set([RunPhase.Running, RunPhase.AwaitingApproval]);

export type SealedFields = Pick<LangGraphRunStatus, "phase" | "startedAt" | "deadline" | "jobUID">;

export class StatusSeal {
  readonly #key: Buffer;
  /** Verdicts per cached run object: the informers replace an object when it changes. */
  readonly #trusted = new WeakMap<LangGraphRun, boolean>();

  constructor(key: Buffer) {
    if (key.length < keyBytes) throw new Error(`a seal key has at least ${keyBytes} bytes`);
    this.#key = key;
  }

  /** The seal of the fields the operator decides for the run with this uid. */
  ofStatus(runUid: string, status: SealedFields): string {
    const { phase = "", startedAt = "", deadline = "", jobUID = "" } = status;
    return this.#mac(["status", runUid, phase, startedAt, deadline, jobUID]);
  }

  /**
   * Whether the run's phase can be trusted: one the operator decides carries the operator's
   * seal over it and its start, deadline and Job. Pending and the finished phases need none:
   * they grant nothing.
   */
  statusIsTrusted(run: LangGraphRun): boolean {
    const status = run.status;
    if (!status?.phase || !decidedPhases.has(status.phase)) return true;
    let trusted = this.#trusted.get(run);
    if (trusted === undefined) {
      trusted = this.#matches(status.seal, this.ofStatus(run.metadata?.uid ?? "", status));
      this.#trusted.set(run, trusted);
    }
    return trusted;
  }

  /** The annotation the operator puts on the run's Job. */
  ofJob(run: LangGraphRun, jobName: string): string {
    return this.#mac(["job", run.metadata?.uid ?? "", jobName]);
  }

  /** Whether the operator created this Job for this run. */
  jobIsSealed(run: LangGraphRun, job: V1Job): boolean {
    const claimed = job.metadata?.annotations?.[annotations.seal];
    return this.#matches(claimed, this.ofJob(run, job.metadata?.name ?? ""));
  }

  #mac(parts: string[]): string {
    const mac = createHmac("sha256", this.#key).update(JSON.stringify(parts)).digest("base64url");
    return `${version}.${mac}`;
  }

  #matches(claimed: string | undefined, expected: string): boolean {
    if (typeof claimed !== "string") return false;
    const a = Buffer.from(claimed);
    const b = Buffer.from(expected);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}

/** Loads the seal key every replica shares, creating it on first start. */
export async function loadStatusSeal(options: {
  core: CoreV1Api;
  namespace: string;
  secretName: string;
  logger: Logger;
}): Promise<StatusSeal> {
  const secret = new SharedSecret({
    ...options,
    name: options.secretName,
    type: "Opaque",
    what: "seal key",
  });
  const key = await secret.converge(async (stored) => {
    const current = stored?.[keyField];
    if (current && Buffer.from(current, "base64").length >= keyBytes) {
      return { result: current };
    }
    const fresh = randomBytes(keyBytes).toString("base64");
    return {
      result: fresh,
      write: { data: { [keyField]: fresh }, message: "created the seal key" },
    };
  });
  return new StatusSeal(Buffer.from(key, "base64"));
}

/**
 * Whether the Job is the one the operator created for the run: controlled by the run, and
 * the uid its sealed status records or, before that is written, carrying the operator's seal.
 * A Job someone else made under the run's name, first or after the real one was deleted, is
 * never the run's.
 */
export function isRunJob(run: LangGraphRun, job: V1Job, seal: StatusSeal): boolean {
  const owner = job.metadata?.ownerReferences?.find((o) => o.controller);
  if (owner?.uid !== run.metadata?.uid) return false;
  const recorded = run.status?.jobUID;
  return recorded ? job.metadata?.uid === recorded : seal.jobIsSealed(run, job);
}
