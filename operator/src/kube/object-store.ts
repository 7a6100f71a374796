// An informer's objects by "namespace/name", indexed by namespace so that a namespace's list
// costs what it holds, not what the cluster holds (issuance lists policies and Connections).
import type { KubernetesObject } from "@kubernetes/client-node";

/** The cache and work-queue key of an object: "namespace/name", or "name" when cluster-scoped. */
export function objectKey(obj: KubernetesObject): string {
  const namespace = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? "";
  return namespace ? `${namespace}/${name}` : name;
}

export class ObjectStore<T extends KubernetesObject> {
  readonly #byKey = new Map<string, T>();
  readonly #byNamespace = new Map<string, Map<string, T>>();

  get size(): number {
    return this.#byKey.size;
  }

  get(key: string): T | undefined {
    return this.#byKey.get(key);
  }

  /** Every object, or a namespace's ("" for cluster-scoped ones). */
  list(namespace?: string): T[] {
    if (namespace === undefined) return [...this.#byKey.values()];
    return [...(this.#byNamespace.get(namespace)?.values() ?? [])];
  }

  entries(): IterableIterator<[string, T]> {
    return this.#byKey.entries();
  }

  set(obj: T): void {
    const key = objectKey(obj);
    const namespace = obj.metadata?.namespace ?? "";
    this.#byKey.set(key, obj);
    const objects = this.#byNamespace.get(namespace) ?? new Map<string, T>();
    objects.set(key, obj);
    this.#byNamespace.set(namespace, objects);
  }

  /** True when it held the object. */
  delete(obj: T): boolean {
    const key = objectKey(obj);
    if (!this.#byKey.delete(key)) return false;
    const namespace = obj.metadata?.namespace ?? "";
    const objects = this.#byNamespace.get(namespace);
    objects?.delete(key);
    if (objects?.size === 0) this.#byNamespace.delete(namespace);
    return true;
  }
}
