// Remembers an async lookup's answers for a while: Service and DNS lookups shared by runs, and the
// Secrets every credential issuance reads.
export function rememberFor<A extends unknown[], R>(
  ttlMs: number,
  lookup: (...args: A) => Promise<R>,
  now: () => number = performance.now.bind(performance),
): (...args: A) => Promise<R> {
  const answers = new Map<string, { value: Promise<R>; expires: number }>();
  return (...args: A) => {
    const key = JSON.stringify(args);
    const cached = answers.get(key);
    if (cached && cached.expires > now()) return cached.value;
    const value = lookup(...args);
    answers.set(key, { value, expires: now() + ttlMs });
    // A failed lookup is not remembered: the next reconcile asks again.
    value.catch(() => answers.delete(key));
    if (answers.size > 10_000) answers.clear();
    return value;
  };
}
