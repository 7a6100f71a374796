// Durations in the API are Go-style strings ("90s", "1h30m", "1.5h"), as CEL's duration() reads them.
const unitMs = { ns: 1e-6, us: 1e-3, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const whole = /^(?:\d+(?:\.\d+)?(?:ns|us|ms|s|m|h))+$/;
const part = /(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)/g;

/** Milliseconds in a duration string; throws an error naming the input when it is not one. */
export function parseDuration(text: string): number {
  if (!whole.test(text)) {
    throw new Error(`"${text}" is not a duration such as 30m, 1h or 1h30m`);
  }
  let total = 0;
  for (const [, amount, unit] of text.matchAll(part)) {
    total += Number(amount) * unitMs[unit as keyof typeof unitMs];
  }
  return total;
}

/** A short Go-style rendering of milliseconds, e.g. 5400000 -> "1h30m". */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  let seconds = Math.round(ms / 1_000);
  const hours = Math.floor(seconds / 3_600);
  seconds -= hours * 3_600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  return (
    `${hours ? `${hours}h` : ""}${minutes ? `${minutes}m` : ""}${seconds ? `${seconds}s` : ""}` ||
    "0s"
  );
}
