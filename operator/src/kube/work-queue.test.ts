import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { WorkQueue } from "./work-queue.ts";

/** A promise with its resolve function, to hold a handler until the test releases it. */
function gate(): { promise: Promise<void>; open: () => void } {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { promise, open: () => resolve() };
}

async function until(what: string, condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(1);
  }
}

describe("WorkQueue", () => {
  it("de-duplicates keys added while waiting", async () => {
    const queue = new WorkQueue({ name: "test" });
    queue.add("ns/a");
    queue.add("ns/b");
    queue.add("ns/a");
    assert.equal(queue.depth, 2);

    const handled: string[] = [];
    queue.start(
      async (key) => {
        handled.push(key);
      },
      { concurrency: 1 },
    );
    await until("both keys handled", () => handled.length === 2);
    await sleep(10);
    assert.deepEqual(handled, ["ns/a", "ns/b"]);
    await queue.shutdown();
  });

  it("never runs one key twice at once and re-runs a key added during processing", async () => {
    const queue = new WorkQueue({ name: "test" });
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const firstRun = gate();
    queue.start(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        runs++;
        if (runs === 1) await firstRun.promise;
        running--;
      },
      { concurrency: 4 },
    );

    queue.add("ns/a");
    await until("the first run to start", () => runs === 1);
    queue.add("ns/a");
    queue.add("ns/a");
    assert.equal(queue.depth, 0, "a key in flight is not waiting again");
    await sleep(10);
    assert.equal(runs, 1, "the key does not run again while in flight");

    firstRun.open();
    await until("the re-run", () => runs === 2);
    await sleep(10);
    assert.equal(runs, 2, "adds during processing collapse into one re-run");
    assert.equal(maxRunning, 1);
    await queue.shutdown();
  });

  it("backoff grows with each failure and forget resets it", async () => {
    const queue = new WorkQueue({ name: "test", baseDelayMs: 10, maxDelayMs: 40 });
    const attempts: number[] = [];
    let failUntil = 4;
    const reported: number[] = [];
    queue.start(
      async () => {
        attempts.push(performance.now());
        if (attempts.length <= failUntil) throw new Error("transient");
      },
      { concurrency: 1, onError: (_key, _error, failures) => reported.push(failures) },
    );

    queue.add("ns/a");
    await until("four failures and a success", () => attempts.length === 5);
    assert.deepEqual(reported, [1, 2, 3, 4]);
    assert.equal(queue.failures("ns/a"), 0, "success forgets the key");
    const gaps = attempts.slice(1).map((at, i) => at - (attempts[i] ?? at));
    // Ceilings are 10, 20, 40 and 40 (capped) ms, each delay at least half its ceiling.
    for (const [i, minimum] of [5, 10, 20, 20].entries()) {
      assert.ok((gaps[i] ?? 0) >= minimum - 1, `retry ${i + 1} waited ${gaps[i]} ms`);
    }

    failUntil = Number.POSITIVE_INFINITY;
    queue.addRateLimited("ns/b");
    queue.addRateLimited("ns/b");
    assert.equal(queue.failures("ns/b"), 2);
    queue.forget("ns/b");
    assert.equal(queue.failures("ns/b"), 0);
    await queue.shutdown();
  });

  it("re-queues conflicts quietly, with backoff but without reporting them", async () => {
    const queue = new WorkQueue({ name: "test", baseDelayMs: 1 });
    const conflict = Object.assign(new Error("conflict"), { code: 409 });
    let runs = 0;
    const reported: unknown[] = [];
    queue.start(
      async () => {
        runs++;
        if (runs === 1) throw conflict;
      },
      {
        concurrency: 1,
        onError: (_key, error) => reported.push(error),
        isQuiet: (error) => error === conflict,
      },
    );
    queue.add("ns/a");
    await until("the retry after the conflict", () => runs === 2);
    assert.deepEqual(reported, []);
    await queue.shutdown();
  });

  it("requeueAfterMs re-adds the key later", async () => {
    const queue = new WorkQueue({ name: "test" });
    const runs: number[] = [];
    queue.start(
      async () => {
        runs.push(performance.now());
        return runs.length === 1 ? { requeueAfterMs: 30 } : undefined;
      },
      { concurrency: 1 },
    );
    queue.add("ns/a");
    await until("the requeued run", () => runs.length === 2);
    assert.ok((runs[1] ?? 0) - (runs[0] ?? 0) >= 29, "the key came back no sooner than asked");
    await sleep(40);
    assert.equal(runs.length, 2, "a run without requeueAfterMs is not requeued");
    await queue.shutdown();
  });

  it("addAfter waits for a delay past 24.8 days instead of firing at once", async () => {
    const queue = new WorkQueue({ name: "far" });
    const seen: string[] = [];
    queue.start(async (key) => void seen.push(key), { concurrency: 1 });
    queue.addAfter("ns/far", 30 * 24 * 3600 * 1000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(seen, []);
    await queue.shutdown();
  });

  it("addAfter keeps the earliest of several pending adds for one key", async () => {
    const queue = new WorkQueue({ name: "test" });
    const runs: number[] = [];
    const started = performance.now();
    queue.start(
      async () => {
        runs.push(performance.now() - started);
      },
      { concurrency: 1 },
    );
    queue.addAfter("ns/a", 1_000);
    queue.addAfter("ns/a", 10);
    queue.addAfter("ns/a", 500);
    await until("the delayed run", () => runs.length === 1);
    assert.ok((runs[0] ?? 0) < 400, `ran after ${runs[0]} ms, not at a later deadline`);
    await queue.shutdown();
  });

  it("shutdown waits for in-flight work and takes no new keys", async () => {
    const queue = new WorkQueue({ name: "test" });
    const release = gate();
    let finished = false;
    let runs = 0;
    queue.start(
      async () => {
        runs++;
        await release.promise;
        finished = true;
      },
      { concurrency: 1 },
    );
    queue.add("ns/a");
    await until("the run to start", () => runs === 1);
    queue.addAfter("ns/b", 5);

    let shutDown = false;
    const shutdown = queue.shutdown().then(() => {
      shutDown = true;
    });
    queue.add("ns/c");
    await sleep(20);
    assert.equal(shutDown, false, "shutdown does not resolve while a handler runs");
    release.open();
    await shutdown;
    assert.equal(finished, true);
    await sleep(20);
    assert.equal(runs, 1, "neither the delayed nor the late key ran");
  });

  it("respects the concurrency limit and reports the depth", async () => {
    const depths: number[] = [];
    const queue = new WorkQueue({ name: "test", onDepthChange: (depth) => depths.push(depth) });
    for (const key of ["ns/a", "ns/b", "ns/c", "ns/d", "ns/e"]) queue.add(key);
    assert.equal(queue.depth, 5);

    let running = 0;
    let maxRunning = 0;
    let done = 0;
    queue.start(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(10);
        running--;
        done++;
      },
      { concurrency: 2 },
    );
    assert.equal(queue.depth, 3, "two keys are in flight, three wait");
    await until("all keys handled", () => done === 5);
    assert.equal(maxRunning, 2);
    assert.deepEqual(depths, [1, 2, 3, 4, 5, 3, 2, 1, 0]);
    await queue.shutdown();
  });
});
