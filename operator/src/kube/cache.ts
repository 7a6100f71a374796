// What controllers read: an informer's store, by namespace and name. Tests pass an in-memory one.
export interface Cache<T> {
  get(namespace: string, name: string): T | undefined;
  list(namespace?: string): T[];
}

/** A cache that says when its objects change: what controllers enqueue keys from. */
export interface WatchedCache<T> extends Cache<T> {
  /** Called for every added, updated and deleted object, and for every object after a (re)list. */
  onChange(handler: (obj: T) => void): void;
}
