// Node's timers fire at once for a delay past 2^31-1 ms (about 24.8 days) instead of waiting:
// every computed delay goes through timerDelay. A longer wait ends early and is re-armed.
export const maxTimerMs = 2 ** 31 - 1;

/** The delay clamped to what a timer can wait: 0 to maxTimerMs; NaN waits 0. */
export function timerDelay(ms: number): number {
  return Number.isNaN(ms) ? 0 : Math.min(Math.max(ms, 0), maxTimerMs);
}
