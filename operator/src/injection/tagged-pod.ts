// What a tagged pod says of itself beyond its access: how long one credential of it may live.
import type { V1Pod } from "@kubernetes/client-node";
import { parseDuration } from "../../../api/duration.ts";
import { annotations } from "../../../api/v1alpha1.ts";

const longestMs = 168 * 60 * 60 * 1000;

/** The pod's max-duration annotation in ms, undefined when absent; throws naming what is wrong. */
export function maxDurationOf(pod: V1Pod): number | undefined {
  const text = pod.metadata?.annotations?.[annotations.maxDuration];
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms <= 0 || ms > longestMs) {
    throw new Error(`"${text}" must be a positive duration of at most 168h, such as 30m or 1h`);
  }
  return ms;
}
