// Small statistics and load helpers the benchmarks share.

/** The p-th percentile (nearest rank) of values. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return (
    sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN
  );
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Calls each for every item, at most `size` at a time. */
export async function inBatches<T>(
  items: T[],
  size: number,
  each: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await each(items[next++] as T);
  };
  await Promise.all(Array.from({ length: size }, worker));
}

/** `workers` loops calling call until durationMs passes; returns every call's latency in ms. */
export async function closedLoop(
  workers: number,
  durationMs: number,
  call: (worker: number) => Promise<void>,
): Promise<{ latencies: number[]; elapsedMs: number }> {
  const latencies: number[] = [];
  const started = performance.now();
  const end = started + durationMs;
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      while (performance.now() < end) {
        const before = performance.now();
        await call(worker);
        latencies.push(performance.now() - before);
      }
    }),
  );
  return { latencies, elapsedMs: performance.now() - started };
}

/**
 * Starts call at a fixed rate for durationMs, whatever earlier calls are doing, and measures
 * each from when it was due (so a stall counts against every call it delays).
 */
export async function openLoop(
  perSecond: number,
  durationMs: number,
  call: (index: number) => Promise<void>,
): Promise<number[]> {
  const latencies: number[] = [];
  const started = performance.now();
  const pending: Promise<void>[] = [];
  for (let index = 0; index < (perSecond * durationMs) / 1000; index++) {
    const due = started + (index * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(call(index).then(() => void latencies.push(performance.now() - due)));
  }
  await Promise.all(pending);
  return latencies;
}

export const ms = (v: number) => `${v.toFixed(1)} ms`;
