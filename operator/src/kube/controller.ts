// A controller in controller-runtime's sense: a work queue of "namespace/name" keys, filled by
// cache events, drained by workers that hand each key to one reconciler. It runs only on the
// replica holding the Lease; the caches it reads are filled on every replica.
import type { Logger } from "pino";
import { isConflict } from "./api-errors.ts";
import { WorkQueue } from "./work-queue.ts";

export type ReconcileResult = undefined | { requeueAfterMs: number };

export interface Reconciler {
  /** Converges the object with this key; throws to be retried with backoff. */
  reconcile(key: string): Promise<ReconcileResult>;
}

/** What the leader starts and stops: controllers and periodic sweeps alike. */
export interface LeaderTask {
  start(): void;
  stop(): Promise<void>;
}

export interface ControllerOptions {
  name: string;
  reconciler: Reconciler;
  workers: number;
  logger: Logger;
  /** Every key to look at once on start: what changed while another replica led is caught up. */
  allKeys: () => string[];
  onDepthChange?: (depth: number) => void;
  onReconciled?: (seconds: number, ok: boolean) => void;
}

export class Controller implements LeaderTask {
  readonly #o: ControllerOptions;
  readonly #queue: WorkQueue;

  constructor(options: ControllerOptions) {
    this.#o = options;
    this.#queue = new WorkQueue({
      name: options.name,
      ...(options.onDepthChange ? { onDepthChange: options.onDepthChange } : {}),
    });
  }

  enqueue(key: string): void {
    this.#queue.add(key);
  }

  start(): void {
    const { name, reconciler, workers, logger, onReconciled } = this.#o;
    logger.info({ controller: name }, "controller started");
    this.#queue.start(
      async (key) => {
        const started = performance.now();
        let ok = false;
        try {
          const result = await reconciler.reconcile(key);
          ok = true;
          return result;
        } finally {
          onReconciled?.((performance.now() - started) / 1000, ok);
        }
      },
      {
        concurrency: workers,
        // Another writer changed the object since the cache saw it: the next event retries.
        isQuiet: isConflict,
        onError: (key, error, failures) =>
          logger.warn(
            { controller: name, key, err: error, failures },
            "reconcile failed; retrying",
          ),
      },
    );
    for (const key of this.#o.allKeys()) this.#queue.add(key);
  }

  stop(): Promise<void> {
    return this.#queue.shutdown();
  }
}
