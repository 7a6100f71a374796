// What controllers read: an informer's store, by namespace and name. Tests pass a Map-backed fake.
export interface Cache<T> {
  get(namespace: string, name: string): T | undefined;
  list(namespace?: string): T[];
}
