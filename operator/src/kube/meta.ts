// Small pieces of the Kubernetes API conventions every writer here needs.
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";

/** The field manager of everything the operator applies (server-side apply). */
export const fieldManager = "langgraph-jit-operator";

/** Request options selecting a patch's content type. */
export const patchAs = {
  merge: setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  json: setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
  apply: setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
};

/** metav1.Time: RFC 3339 in whole seconds, rounded down. */
export function metaTime(date: Date | number): string {
  return `${new Date(date).toISOString().slice(0, 19)}Z`;
}
