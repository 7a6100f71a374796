// The one bounded in-memory cache of both processes (parsed SQL, TLS contexts, token reviews,
// lookups): at capacity the least recently used entry goes, and an entry past its time to live
// counts as absent. A Map iterates in insertion order, so each use re-inserts its entry last.

export interface BoundedCacheOptions {
  /** Entries held at most; setting one more evicts the least recently used. */
  maxEntries: number;
  /** How long an entry is kept after it is set; for as long as there is room when absent. */
  ttlMs?: number;
  /** The clock ttlMs runs on; defaults to performance.now, which wall-clock steps do not move. */
  now?: () => number;
}

export class BoundedCache<K, V> {
  readonly #entries = new Map<K, { value: V; expiresAt: number }>();
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(options: BoundedCacheOptions) {
    const { maxEntries, ttlMs = Number.POSITIVE_INFINITY } = options;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`a cache holds a positive whole number of entries, not ${maxEntries}`);
    }
    if (!(ttlMs > 0)) {
      throw new RangeError(`a cache's time to live must be a positive number of ms, not ${ttlMs}`);
    }
    this.#maxEntries = maxEntries;
    this.#ttlMs = ttlMs;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Entries held, including expired ones not looked up since. */
  get size(): number {
    return this.#entries.size;
  }

  /** The key's value, which becomes the most recently used; undefined when absent or expired. */
  get(key: K): V | undefined {
    return this.#live(key)?.value;
  }

  /** Whether the key has a live value; a hit counts as a use, as with get. */
  has(key: K): boolean {
    return this.#live(key) !== undefined;
  }

  /**
   * Keeps value for ttlMs (the cache's own unless given) as the most recently used entry,
   * evicting the least recently used when full. A ttlMs of 0 or less only drops the old value.
   */
  set(key: K, value: V, ttlMs = this.#ttlMs): void {
    this.#entries.delete(key);
    if (!(ttlMs > 0)) return;
    if (this.#entries.size >= this.#maxEntries) {
      this.#entries.delete(this.#entries.keys().next().value as K);
    }
    this.#entries.set(key, { value, expiresAt: this.#now() + ttlMs });
  }

  delete(key: K): boolean {
    return this.#entries.delete(key);
  }

  /** The key's unexpired entry, moved to the most recently used end; an expired one is dropped. */
  #live(key: K): { value: V } | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    if (entry.expiresAt <= this.#now()) return undefined;
    this.#entries.set(key, entry);
    return entry;
  }
}
