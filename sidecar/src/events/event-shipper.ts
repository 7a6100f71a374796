// Ships the buffered session events to the operator in batches, oldest first, authenticated
// with the run JWT, and lets the buffer drop them only once the operator has acknowledged
// them. Failures back off with jitter; nothing is skipped, so every event arrives, and the
// operator's (run uid, seq) key makes a resend harmless.
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { type Backoff, backoffDelay } from "../../../api/backoff.ts";
import {
  maxBatchBytes,
  maxEventsPerBatch,
  type SessionEvent,
} from "../../../api/session-events.ts";
import type { EventBuffer } from "./event-buffer.ts";

export interface EventShipperOptions {
  buffer: EventBuffer;
  post: (runToken: string, events: SessionEvent[], signal: AbortSignal) => Promise<unknown>;
  /** The newest run JWT the sidecar held; it still signs the last events after revocation. */
  token: () => string | undefined;
  logger: Logger;
  backoff?: Backoff;
  /** How long to wait for new events before looking again. */
  idleMs?: number;
  /** How long a batch may wait for more events before it goes (unless full). */
  lingerMs?: number;
}

const defaultBackoff: Backoff = { initialMs: 200, maxMs: 5_000 };

export class EventShipper {
  readonly #options: EventShipperOptions;
  readonly #stopped = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(options: EventShipperOptions) {
    this.#options = options;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Ships what is buffered until nothing is left or deadlineMs pass; true when all went. */
  async flush(deadlineMs: number): Promise<boolean> {
    const deadline = Date.now() + deadlineMs;
    const signal = AbortSignal.timeout(deadlineMs);
    while (this.#options.buffer.pending > 0 && Date.now() < deadline) {
      if (!(await this.#shipOnce(signal))) await sleep(50).catch(() => {});
    }
    return this.#options.buffer.pending === 0;
  }

  async stop(): Promise<void> {
    this.#stopped.abort(new Error("the sidecar is stopping"));
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { buffer } = this.#options;
    const signal = this.#stopped.signal;
    let failures = 0;
    while (!signal.aborted) {
      if (buffer.pending === 0) {
        await buffer.waitForEvents(buffer.last, this.#options.idleMs ?? 1_000, signal);
        // A busy proxy records many events a second: let them gather into one batch.
        if (buffer.pending < maxEventsPerBatch) {
          await sleep(this.#options.lingerMs ?? 100, undefined, { signal }).catch(() => {});
        }
        continue;
      }
      if (await this.#shipOnce(signal)) {
        failures = 0;
        continue;
      }
      const delay = backoffDelay(failures++, this.#options.backoff ?? defaultBackoff);
      await sleep(delay, undefined, { signal }).catch(() => {});
    }
  }

  /** One batch; true when the operator acknowledged it. */
  async #shipOnce(signal: AbortSignal): Promise<boolean> {
    const { buffer, logger } = this.#options;
    const token = this.#options.token();
    if (!token) return false;
    let events: SessionEvent[] = [];
    try {
      // Inside: a read the disk refuses is retried like a refused post, never thrown out of the loop.
      events = buffer.read(maxEventsPerBatch, maxBatchBytes);
      const last = events.at(-1);
      if (!last) return true;
      const answer = (await this.#options.post(token, events, signal)) as {
        ackedThrough?: unknown;
      };
      const acked = answer?.ackedThrough;
      if (typeof acked !== "number" || !Number.isInteger(acked)) {
        logger.warn({ answer }, "the operator answered an event batch without ackedThrough");
        return false;
      }
      buffer.acknowledge(acked);
      return acked >= last.seq;
    } catch (error) {
      if (!signal.aborted) {
        logger.warn(
          { err: error, pending: buffer.pending, first: events[0]?.seq },
          "session events not delivered yet; retrying",
        );
      }
      return false;
    }
  }
}
