// The one retry backoff of both processes: exponential, capped, with jitter so that replicas or
// sidecars that failed together do not retry together, and clamped to what a timer can wait.
import { timerDelay } from "./timers.ts";

export interface Backoff {
  /** The first retry's ceiling. */
  initialMs: number;
  /** No retry waits longer. */
  maxMs: number;
}

/**
 * The wait before retry number `attempt` (0 for the first): a delay in [ceiling/2, ceiling]
 * ("equal jitter"), ceiling = initialMs * 2^attempt capped at maxMs.
 */
export function backoffDelay(attempt: number, backoff: Backoff, random = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, attempt));
  return timerDelay(ceiling / 2 + (random() * ceiling) / 2);
}
