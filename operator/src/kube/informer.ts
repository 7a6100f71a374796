// client-node 2.0.1's informer (ListWatch in dist/cache.js, Watch in dist/watch.js), as read: a
// list or watch error fires "error" and stops it for good (only 410 Gone re-lists); a watch that
// ends is resumed from its resourceVersion (backing off to 30 s while none brings an event), one
// silent for 30 s is aborted and resumed; no scheduled re-list; stop() fires "error" (AbortError).
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { backoffDelay } from "../../../api/backoff.ts";
import { ObjectStore, objectKey } from "./object-store.ts";

export interface ResilientInformerOptions<T extends KubernetesObject> {
  kc: KubeConfig;
  name: string;
  /** Watch path, e.g. /apis/batch/v1/jobs or /api/v1/namespaces/NS/configmaps. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  /** Full re-list (by restarting) at least this often, and when a watch or list hangs. */
  relistIntervalMs?: number;
  maxBackoffMs?: number;
  logger: Logger;
}

const BASE_BACKOFF_MS = 1_000;

// Watch.watch rejects instead of calling done when authentication fails (e.g. an exec plugin);
// inside ListWatch's reconnect that rejection is unhandled and would crash the process.
class ReportingWatch extends Watch {
  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    try {
      return await super.watch(path, queryParams, callback, done);
    } catch (error) {
      done(error);
      return new AbortController();
    }
  }
}

/**
 * A cache of one resource kind that keeps itself current: every informer error restarts it
 * with jittered backoff, and it re-lists at least every relistIntervalMs.
 */
export class ResilientInformer<T extends KubernetesObject> {
  readonly #options: ResilientInformerOptions<T>;
  readonly #relistIntervalMs: number;
  readonly #maxBackoffMs: number;
  readonly #log: Logger;
  readonly #handlers: ((obj: T) => void)[] = [];
  #cache = new ObjectStore<T>();
  /** Incremented on each (re)start; callbacks from an older generation are ignored. */
  #generation = 0;
  #informer: ListWatch<T> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #lastFailureAt = Number.NEGATIVE_INFINITY;
  #running = false;
  #synced = false;
  #firstSync: PromiseWithResolvers<void> | undefined;

  constructor(options: ResilientInformerOptions<T>) {
    this.#options = options;
    this.#relistIntervalMs = options.relistIntervalMs ?? 5 * 60_000;
    this.#maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.#log = options.logger.child({ informer: options.name });
  }

  /** Called for every added, updated and deleted object, and for every object after a (re)list. */
  onChange(handler: (obj: T) => void): void {
    this.#handlers.push(handler);
  }

  /** Starts listing and watching; resolves once the first list is in the cache. */
  start(): Promise<void> {
    if (this.#running) throw new Error(`informer ${this.#options.name} is already started`);
    this.#running = true;
    this.#firstSync = Promise.withResolvers<void>();
    void this.#run("start");
    return this.#firstSync.promise;
  }

  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    this.#generation++;
    clearTimeout(this.#timer);
    this.#stopInformer();
    // A no-op when start() has already resolved.
    this.#firstSync?.reject(new Error(`informer ${this.#options.name} stopped before it synced`));
  }

  get synced(): boolean {
    return this.#synced;
  }

  list(namespace?: string): T[] {
    return this.#cache.list(namespace);
  }

  get(namespace: string, name: string): T | undefined {
    return this.#cache.get(namespace ? `${namespace}/${name}` : name);
  }

  async #run(reason: string): Promise<void> {
    const generation = ++this.#generation;
    this.#stopInformer();
    // One timer covers both the periodic re-list and a watch or list that went quiet or hung:
    // no generation outlives relistIntervalMs.
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#run("periodic re-list"), this.#relistIntervalMs);
    this.#log.debug({ reason }, "listing");

    let listed: KubernetesListObject<T>;
    try {
      listed = await this.#options.list();
    } catch (error) {
      this.#fail(generation, error, "list");
      return;
    }
    if (generation !== this.#generation) return;
    this.#replaceCache(listed.items);

    let first = true;
    // The informer watches from the list above; it lists again by itself only after a 410 Gone.
    const listFn = async () => {
      if (!first) return this.#options.list();
      first = false;
      return listed;
    };
    const { path, labelSelector, kc } = this.#options;
    const informer = new ListWatch<T>(path, new ReportingWatch(kc), listFn, false, labelSelector);
    const current = () => generation === this.#generation;
    informer.on("add", (obj) => {
      if (current()) this.#upsert(obj);
    });
    informer.on("update", (obj) => {
      if (current()) this.#upsert(obj);
    });
    informer.on("delete", (obj) => {
      if (current()) this.#remove(obj);
    });
    informer.on("error", (error) => this.#fail(generation, error, "watch"));
    this.#informer = informer;
    try {
      await informer.start();
    } catch (error) {
      this.#fail(generation, error, "watch");
    }
  }

  #fail(generation: number, error: unknown, during: "list" | "watch"): void {
    if (generation !== this.#generation || !this.#running) return;
    this.#generation++;
    this.#stopInformer();
    const now = performance.now();
    // Start the backoff over once the informer has run a while without failing.
    if (now - this.#lastFailureAt > 2 * this.#maxBackoffMs) this.#failures = 0;
    this.#lastFailureAt = now;
    this.#failures++;
    const delayMs = backoffDelay(this.#failures - 1, {
      initialMs: BASE_BACKOFF_MS,
      maxMs: this.#maxBackoffMs,
    });
    this.#log.warn(
      { err: error, attempt: this.#failures, delayMs },
      `${during} of ${this.#options.path} failed; restarting the informer in ${delayMs} ms`,
    );
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#run(`retry after ${during} error`), delayMs);
  }

  /** Takes a fresh list as the truth; objects that vanished meanwhile are reported as changed. */
  #replaceCache(items: T[]): void {
    const previous = this.#cache;
    this.#cache = new ObjectStore<T>();
    for (const obj of items) this.#cache.set(obj);
    for (const [key, obj] of previous.entries()) {
      if (!this.#cache.get(key)) this.#notify(obj);
    }
    for (const obj of this.#cache.list()) this.#notify(obj);
    this.#synced = true;
    this.#firstSync?.resolve();
  }

  #upsert(obj: T): void {
    const key = objectKey(obj);
    const version = obj.metadata?.resourceVersion;
    if (version !== undefined && this.#cache.get(key)?.metadata?.resourceVersion === version) {
      return;
    }
    this.#cache.set(obj);
    this.#notify(obj);
  }

  #remove(obj: T): void {
    if (this.#cache.delete(obj)) this.#notify(obj);
  }

  #notify(obj: T): void {
    for (const handler of this.#handlers) {
      try {
        handler(obj);
      } catch (error) {
        this.#log.error({ err: error, object: objectKey(obj) }, "change handler threw");
      }
    }
  }

  #stopInformer(): void {
    const informer = this.#informer;
    this.#informer = undefined;
    informer?.stop().catch(() => {});
  }
}
