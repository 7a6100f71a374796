// Remembers an async lookup's answers for a while: Service and DNS lookups shared by runs, and the
// Secrets every credential issuance reads.
import { BoundedCache } from "../../../api/bounded-cache.ts";

// One answer per argument list (a Service, a host, a Secret): the bound keeps a large cluster's
// operator from holding every answer it was ever asked for.
const maxAnswers = 10_000;

export function rememberFor<A extends unknown[], R>(
  ttlMs: number,
  lookup: (...args: A) => Promise<R>,
  now: () => number = performance.now.bind(performance),
): (...args: A) => Promise<R> {
  const answers = new BoundedCache<string, Promise<R>>({ maxEntries: maxAnswers, ttlMs, now });
  return (...args: A) => {
    const key = JSON.stringify(args);
    const cached = answers.get(key);
    if (cached) return cached;
    const value = lookup(...args);
    answers.set(key, value);
    // A failed lookup is not remembered: the next reconcile asks again.
    value.catch(() => answers.delete(key));
    return value;
  };
}
