import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { maxTimerMs } from "../../../api/timers.ts";
import { WorkQueue } from "./work-queue.ts";

/** A promise with its resolve function, to hold a handler until the test releases it. */
function gate(): { promise: Promise<void>; open: () => void } {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { promise, open: () => resolve() };
}

/** Lets every handler and promise chain already started run to its next wait. */
function settle(): Promise<void> {
  // setImmediate is left real: its callback runs only once all pending microtasks have.
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Puts the test in charge of time: setTimeout and Date are node:test's mocks, and
 * performance.now (which the queue's deadlines read) follows the mocked Date.
 */
function mockTime(t: TestContext): { advance: (ms: number) => Promise<void> } {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  t.mock.method(performance, "now", () => Date.now());
  return {
    /** Moves the clock 1 ms at a time, so a timer set by a handler that ran meanwhile fires too. */
    async advance(ms) {
      for (let elapsed = 0; elapsed < ms; elapsed++) {
        await settle();
        t.mock.timers.tick(1);
      }
      await settle();
    },
  };
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
    await settle();
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
    assert.equal(runs, 1, "the first run starts at once");
    queue.add("ns/a");
    queue.add("ns/a");
    assert.equal(queue.depth, 0, "a key in flight is not waiting again");
    await settle();
    assert.equal(runs, 1, "the key does not run again while in flight");

    firstRun.open();
    await settle();
    assert.equal(runs, 2, "adds during processing collapse into one re-run");
    assert.equal(maxRunning, 1);
    await queue.shutdown();
  });

  it("backoff grows with each failure and forget resets it", async (t) => {
    const time = mockTime(t);
    // The top of each jitter range: every retry waits its full ceiling.
    t.mock.method(Math, "random", () => 1);
    const queue = new WorkQueue({ name: "test", baseDelayMs: 10, maxDelayMs: 40 });
    const attempts: number[] = [];
    let failUntil = 4;
    const reported: number[] = [];
    queue.start(
      async () => {
        attempts.push(Date.now());
        if (attempts.length <= failUntil) throw new Error("transient");
      },
      { concurrency: 1, onError: (_key, _error, failures) => reported.push(failures) },
    );

    queue.add("ns/a");
    await time.advance(9);
    assert.equal(attempts.length, 1, "no retry before the first backoff");
    await time.advance(101);
    assert.equal(attempts.length, 5, "four failures and a success");
    assert.deepEqual(reported, [1, 2, 3, 4]);
    assert.equal(queue.failures("ns/a"), 0, "success forgets the key");
    const gaps = attempts.slice(1).map((at, i) => at - (attempts[i] ?? at));
    assert.deepEqual(gaps, [10, 20, 40, 40], "the delay doubles up to maxDelayMs");

    failUntil = Number.POSITIVE_INFINITY;
    queue.addRateLimited("ns/b");
    queue.addRateLimited("ns/b");
    assert.equal(queue.failures("ns/b"), 2);
    queue.forget("ns/b");
    assert.equal(queue.failures("ns/b"), 0);
    await queue.shutdown();
  });

  it("re-queues conflicts quietly, with backoff but without reporting them", async (t) => {
    const time = mockTime(t);
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
    await settle();
    assert.equal(runs, 1, "the retry waits for its backoff");
    assert.equal(queue.failures("ns/a"), 1, "the conflict counts towards the backoff");
    await time.advance(1);
    assert.equal(runs, 2);
    assert.deepEqual(reported, []);
    await queue.shutdown();
  });

  it("requeueAfterMs re-adds the key later", async (t) => {
    const time = mockTime(t);
    const queue = new WorkQueue({ name: "test" });
    let runs = 0;
    queue.start(
      async () => {
        runs++;
        return runs === 1 ? { requeueAfterMs: 30 } : undefined;
      },
      { concurrency: 1 },
    );
    queue.add("ns/a");
    await time.advance(29);
    assert.equal(runs, 1, "the key does not come back sooner than asked");
    await time.advance(1);
    assert.equal(runs, 2, "the key comes back when asked");
    await time.advance(100);
    assert.equal(runs, 2, "a run without requeueAfterMs is not requeued");
    await queue.shutdown();
  });

  it("addAfter waits for a delay past 24.8 days instead of firing at once", async (t) => {
    mockTime(t);
    const queue = new WorkQueue({ name: "far" });
    const seen: string[] = [];
    queue.start(async (key) => void seen.push(key), { concurrency: 1 });
    queue.addAfter("ns/far", 30 * 24 * 3600 * 1000);
    // node:test's timers, like Node's, fire a timer past maxTimerMs after 1 ms.
    t.mock.timers.tick(maxTimerMs - 1);
    await settle();
    assert.deepEqual(seen, []);
    // At the longest wait a timer holds the key runs, early: a reconcile then asks for the rest.
    t.mock.timers.tick(1);
    await settle();
    assert.deepEqual(seen, ["ns/far"]);
    await queue.shutdown();
  });

  it("addAfter keeps the earliest of several pending adds for one key", async (t) => {
    const time = mockTime(t);
    const queue = new WorkQueue({ name: "test" });
    const runs: number[] = [];
    queue.start(
      async () => {
        runs.push(Date.now());
      },
      { concurrency: 1 },
    );
    queue.addAfter("ns/a", 100);
    queue.addAfter("ns/a", 10);
    queue.addAfter("ns/a", 50);
    await time.advance(100);
    assert.deepEqual(runs, [10], "one run, at the earliest deadline");
    await queue.shutdown();
  });

  it("addAfter compares deadlines, not delays, with an add pending from earlier", async (t) => {
    const time = mockTime(t);
    const queue = new WorkQueue({ name: "test" });
    const runs: number[] = [];
    queue.start(
      async () => {
        runs.push(Date.now());
      },
      { concurrency: 1 },
    );
    queue.addAfter("ns/a", 100);
    await time.advance(90);
    queue.addAfter("ns/a", 50);
    await time.advance(100);
    assert.deepEqual(runs, [100], "the pending add, due in 10 ms, is kept");
    await queue.shutdown();
  });

  it("shutdown waits for in-flight work and takes no new keys", async (t) => {
    const time = mockTime(t);
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
    assert.equal(runs, 1, "the run starts at once");
    queue.addAfter("ns/b", 5);

    let shutDown = false;
    const shutdown = queue.shutdown().then(() => {
      shutDown = true;
    });
    queue.add("ns/c");
    assert.equal(queue.depth, 0, "a key added after shutdown is not taken");
    await time.advance(10);
    assert.equal(shutDown, false, "shutdown does not resolve while a handler runs");
    release.open();
    await shutdown;
    assert.equal(finished, true);
    await time.advance(10);
    assert.equal(runs, 1, "neither the delayed nor the late key ran");
    assert.equal(queue.depth, 0);
  });

  it("respects the concurrency limit and reports the depth", async (t) => {
    const time = mockTime(t);
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
        await new Promise((resolve) => setTimeout(resolve, 10));
        running--;
        done++;
      },
      { concurrency: 2 },
    );
    assert.equal(queue.depth, 3, "two keys are in flight, three wait");
    await time.advance(10);
    assert.deepEqual([done, queue.depth], [2, 1], "the next two took the finished ones' places");
    await time.advance(20);
    assert.equal(done, 5);
    assert.equal(maxRunning, 2);
    assert.deepEqual(depths, [1, 2, 3, 4, 5, 3, 2, 1, 0]);
    await queue.shutdown();
  });
});
