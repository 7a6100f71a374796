// A user stamped on an object by our admission webhook (a run's requester, an approval's
// approver), exactly as the API server authenticated them; read back from the annotation only.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Requester } from "../../../api/v1alpha1.ts";

const isStringList = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((item) => typeof item === "string");

/** The user stamped in the annotation, or undefined when it is missing or malformed. */
export function stampedUser(obj: KubernetesObject, annotation: string): Requester | undefined {
  const raw = obj.metadata?.annotations?.[annotation];
  if (!raw) return undefined;
  try {
    const parsed = JSON.parse(raw) as Partial<Requester>;
    if (typeof parsed.username !== "string" || parsed.username === "") return undefined;
    const extra = parsed.extra;
    if (
      extra !== undefined &&
      (typeof extra !== "object" || extra === null || !Object.values(extra).every(isStringList))
    ) {
      return undefined;
    }
    return {
      username: parsed.username,
      uid: typeof parsed.uid === "string" ? parsed.uid : "",
      groups: isStringList(parsed.groups) ? parsed.groups : [],
      ...(extra ? { extra } : {}),
    };
  } catch {
    return undefined;
  }
}
