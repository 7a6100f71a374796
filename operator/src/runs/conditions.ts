// metav1.Condition bookkeeping per the Kubernetes API conventions.
import type { Condition } from "../../../api/condition.ts";

export type ConditionUpdate = Omit<Condition, "lastTransitionTime" | "observedGeneration">;

/**
 * Returns the conditions with one set: lastTransitionTime moves only when the status flips,
 * so rewriting an unchanged condition leaves the object byte-for-byte the same.
 */
export function setCondition(
  conditions: Condition[],
  update: ConditionUpdate,
  observedGeneration: number | undefined,
  now: string,
): Condition[] {
  const existing = conditions.find((c) => c.type === update.type);
  const next: Condition = {
    ...update,
    observedGeneration,
    lastTransitionTime:
      existing && existing.status === update.status ? existing.lastTransitionTime : now,
  };
  return existing
    ? conditions.map((c) => (c.type === update.type ? next : c))
    : [...conditions, next];
}

export function findCondition(
  conditions: Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}
