// The one way the operator adds and removes its finalizers on its own kinds: JSON patches
// guarded so that two writers never drop each other's finalizers.
import type { CustomObjectsApi, KubernetesObject } from "@kubernetes/client-node";
import { group, version } from "../../../api/v1alpha1.ts";
import { isNotFound } from "./api-errors.ts";
import { patchAs } from "./meta.ts";

export interface Finalizers {
  /** Adds the finalizer unless the object holds it. A concurrent change fails with 409. */
  add(plural: string, obj: KubernetesObject, finalizer: string): Promise<void>;
  /** Removes the finalizer if the object holds it; an object already gone is fine. */
  remove(plural: string, obj: KubernetesObject, finalizer: string): Promise<void>;
}

/** Finalizers on langgraph-jit.dev objects, through the API server. */
export class CustomObjectFinalizers implements Finalizers {
  readonly #custom: CustomObjectsApi;

  constructor(custom: CustomObjectsApi) {
    this.#custom = custom;
  }

  async add(plural: string, obj: KubernetesObject, finalizer: string): Promise<void> {
    const finalizers = obj.metadata?.finalizers;
    if (finalizers?.includes(finalizer)) return;
    // Another writer may be changing the list: the resourceVersion test makes that a 409.
    await this.#patch(plural, obj, [
      { op: "test", path: "/metadata/resourceVersion", value: obj.metadata?.resourceVersion },
      finalizers
        ? { op: "add", path: "/metadata/finalizers/-", value: finalizer }
        : { op: "add", path: "/metadata/finalizers", value: [finalizer] },
    ]);
  }

  async remove(plural: string, obj: KubernetesObject, finalizer: string): Promise<void> {
    const index = obj.metadata?.finalizers?.indexOf(finalizer) ?? -1;
    if (index < 0) return;
    await this.#patch(plural, obj, [
      { op: "test", path: `/metadata/finalizers/${index}`, value: finalizer },
      { op: "remove", path: `/metadata/finalizers/${index}` },
    ]).catch((error: unknown) => {
      if (!isNotFound(error)) throw error;
    });
  }

  async #patch(plural: string, obj: KubernetesObject, body: object[]): Promise<void> {
    const name = obj.metadata?.name ?? "";
    const namespace = obj.metadata?.namespace;
    await (namespace
      ? this.#custom.patchNamespacedCustomObject(
          { group, version, namespace, plural, name, body },
          patchAs.json,
        )
      : this.#custom.patchClusterCustomObject(
          { group, version, plural, name, body },
          patchAs.json,
        ));
  }
}
