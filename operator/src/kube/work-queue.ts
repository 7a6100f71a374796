// A work queue with client-go's semantics, keyed by "namespace/name": de-duplicating, one
// handler in flight per key, delayed adds, and per-key exponential backoff on failure.
import { backoffDelay } from "../../../api/backoff.ts";
import { timerDelay } from "../../../api/timers.ts";

export interface WorkQueueOptions {
  name: string;
  /** First retry delay after a failure; doubles with each consecutive failure. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Called whenever the number of keys waiting to be processed changes (for a gauge). */
  onDepthChange?: (depth: number) => void;
}

// biome-ignore lint/suspicious/noConfusingVoidType: lets plain `async (key) => {...}` handlers fit.
export type WorkHandler = (key: string) => Promise<void | { requeueAfterMs: number }>;

export interface WorkerOptions {
  concurrency: number;
  onError?: (key: string, error: unknown, failures: number) => void;
  /** Expected errors (e.g. an HTTP 409 conflict): re-queued with backoff but not reported. */
  isQuiet?: (error: unknown) => boolean;
}

interface Worker {
  handler: WorkHandler;
  options: WorkerOptions;
}

export class WorkQueue {
  readonly name: string;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #onDepthChange: ((depth: number) => void) | undefined;

  /** Keys waiting to be handed to a handler; a Set keeps them unique and in FIFO order. */
  readonly #waiting = new Set<string>();
  readonly #processing = new Set<string>();
  /** Keys added again while being processed: re-queued once their handler finishes. */
  readonly #dirty = new Set<string>();
  readonly #delayed = new Map<string, { readyAt: number; timer: NodeJS.Timeout }>();
  readonly #failures = new Map<string, number>();
  readonly #inFlight = new Set<Promise<void>>();
  #reportedDepth = 0;
  #shuttingDown = false;
  #worker: Worker | undefined;

  constructor(options: WorkQueueOptions) {
    this.name = options.name;
    this.#baseDelayMs = options.baseDelayMs ?? 5;
    this.#maxDelayMs = options.maxDelayMs ?? 300_000;
    this.#onDepthChange = options.onDepthChange;
  }

  /** Number of keys waiting: neither in flight nor delayed. */
  get depth(): number {
    return this.#waiting.size;
  }

  add(key: string): void {
    if (this.#shuttingDown) return;
    if (this.#processing.has(key)) {
      this.#dirty.add(key);
      return;
    }
    this.#waiting.add(key);
    this.#depthChanged();
    this.#dispatch();
  }

  /** Adds key after delayMs; when several adds are pending for one key, the earliest wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const readyAt = performance.now() + delayMs;
    const pending = this.#delayed.get(key);
    if (pending !== undefined) {
      if (pending.readyAt <= readyAt) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, timerDelay(delayMs));
    this.#delayed.set(key, { readyAt, timer });
  }

  /** Adds key after its backoff (baseDelayMs doubling per failure up to maxDelayMs, jittered) and counts a failure. */
  addRateLimited(key: string): void {
    const failures = this.failures(key);
    this.#failures.set(key, failures + 1);
    this.addAfter(
      key,
      backoffDelay(failures, { initialMs: this.#baseDelayMs, maxMs: this.#maxDelayMs }),
    );
  }

  /** Resets the backoff of key after it was processed successfully. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Runs handler for queued keys, at most options.concurrency at once and one per key. */
  start(handler: WorkHandler, options: WorkerOptions): void {
    if (this.#worker !== undefined) throw new Error(`work queue ${this.name} is already started`);
    if (!(options.concurrency >= 1)) {
      throw new Error(`work queue ${this.name}: concurrency must be at least 1`);
    }
    this.#worker = { handler, options };
    this.#dispatch();
  }

  /** Stops taking new keys, cancels delayed adds and waits for the handlers in flight. */
  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    for (const { timer } of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
    await Promise.allSettled(this.#inFlight);
  }

  #dispatch(): void {
    const worker = this.#worker;
    if (worker === undefined) return;
    for (const key of this.#waiting) {
      if (this.#shuttingDown || this.#processing.size >= worker.options.concurrency) break;
      this.#waiting.delete(key);
      this.#processing.add(key);
      const run = this.#process(key, worker).finally(() => {
        this.#inFlight.delete(run);
        this.#processing.delete(key);
        if (this.#dirty.delete(key)) this.add(key);
        this.#dispatch();
      });
      this.#inFlight.add(run);
    }
    this.#depthChanged();
  }

  async #process(key: string, { handler, options }: Worker): Promise<void> {
    try {
      const result = await handler(key);
      this.forget(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (error) {
      this.addRateLimited(key);
      if (options.isQuiet?.(error)) return;
      try {
        options.onError?.(key, error, this.failures(key));
      } catch {
        // A failing error reporter must not leave a rejected promise nobody awaits.
      }
    }
  }

  #depthChanged(): void {
    if (this.#waiting.size === this.#reportedDepth) return;
    this.#reportedDepth = this.#waiting.size;
    this.#onDepthChange?.(this.#reportedDepth);
  }
}
