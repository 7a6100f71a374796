// LeaderElector against the real API server, with short durations so hand-overs take seconds.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CoordinationV1Api, type KubeConfig, V1MicroTime } from "@kubernetes/client-node";
import pino from "pino";
import { LeaderElector } from "../../operator/src/kube/leader-election.ts";
import { createTestNamespace, eventually, kubeConfigFor } from "../lib/cluster.ts";
import { ApiServerProxy } from "./api-server-proxy.ts";

const admin = kubeConfigFor("admin");
const leases = admin.makeApiClient(CoordinationV1Api);
const logger = pino({ level: process.env.LOG_LEVEL ?? "silent" });

const LEASE_DURATION_MS = 2_000;
const RENEW_DEADLINE_MS = 1_500;
const RETRY_PERIOD_MS = 200;

interface Candidate {
  elector: LeaderElector;
  identity: string;
  /** Each term as it is lived: its signal, and when it started and ended. */
  terms: { signal: AbortSignal; startedAt: number; stoppedAt?: number }[];
}

describe("LeaderElector", () => {
  let namespace: { name: string; remove: () => Promise<void> };
  let candidates: Candidate[] = [];
  let proxy: ApiServerProxy;

  before(async () => {
    proxy = await ApiServerProxy.start(admin);
  });
  after(async () => {
    await proxy.close();
  });
  afterEach(async () => {
    proxy.restore();
    await Promise.all(candidates.map(({ elector }) => elector.stop()));
    candidates = [];
    await namespace?.remove();
  });

  async function inNewNamespace(): Promise<string> {
    namespace = await createTestNamespace("leader");
    return namespace.name;
  }

  function candidate(identity: string, kc: KubeConfig = admin): Candidate {
    const terms: Candidate["terms"] = [];
    const elector = new LeaderElector({
      kc,
      namespace: namespace.name,
      name: "operator",
      identity,
      leaseDurationMs: LEASE_DURATION_MS,
      renewDeadlineMs: RENEW_DEADLINE_MS,
      retryPeriodMs: RETRY_PERIOD_MS,
      logger,
      onStartedLeading: (signal) => terms.push({ signal, startedAt: performance.now() }),
      onStoppedLeading: () => {
        const term = terms.at(-1);
        if (term) term.stoppedAt = performance.now();
      },
    });
    const started = { elector, identity, terms };
    candidates.push(started);
    elector.start();
    return started;
  }

  const leaders = () => candidates.filter(({ elector }) => elector.isLeader);
  const holderOf = async (name = "operator") =>
    (await leases.readNamespacedLease({ name, namespace: namespace.name })).spec;

  it("elects exactly one of two candidates", async () => {
    await inNewNamespace();
    candidate("replica-a");
    candidate("replica-b");
    const [leader] = await eventually("a leader", async () =>
      leaders().length > 0 ? leaders() : undefined,
    );
    assert.ok(leader);
    // Several renewals: the other candidate never leads alongside.
    for (let i = 0; i < 15; i++) {
      assert.deepEqual(
        leaders().map(({ identity }) => identity),
        [leader.identity],
      );
      await sleep(100);
    }
    assert.equal((await holderOf())?.holderIdentity, leader.identity);
    assert.equal(candidates.flatMap(({ terms }) => terms).length, 1, "one term started in all");
  });

  it("hands over promptly when the leader stops, without waiting for the lease to expire", async () => {
    await inNewNamespace();
    candidate("replica-a");
    candidate("replica-b");
    const first = await eventually("a leader", async () => leaders()[0]);
    const other = candidates.find((c) => c !== first);
    assert.ok(other);

    const stoppedAt = performance.now();
    await first.elector.stop();
    const term = first.terms[0];
    assert.ok(term?.signal.aborted, "the stopped leader's signal is aborted");
    assert.ok(term.stoppedAt !== undefined, "onStoppedLeading was called");
    assert.equal(first.elector.isLeader, false);

    await eventually("the other candidate to lead", async () => other.elector.isLeader);
    const handOverMs = performance.now() - stoppedAt;
    assert.ok(handOverMs < LEASE_DURATION_MS, `hand-over took ${Math.round(handOverMs)} ms`);
    const spec = await holderOf();
    assert.equal(spec?.holderIdentity, other.identity);
    assert.equal(spec?.leaseTransitions, 1);
  });

  it("takes over a lease whose holder stopped renewing once leaseDuration has passed", async () => {
    const ns = await inNewNamespace();
    const now = new V1MicroTime();
    await leases.createNamespacedLease({
      namespace: ns,
      body: {
        metadata: { name: "operator" },
        spec: {
          holderIdentity: "crashed-replica",
          leaseDurationSeconds: LEASE_DURATION_MS / 1_000,
          acquireTime: now,
          renewTime: now,
          leaseTransitions: 3,
        },
      },
    });

    const startedAt = performance.now();
    const successor = candidate("replica-a");
    await sleep(LEASE_DURATION_MS / 2);
    assert.equal(successor.elector.isLeader, false, "a lease within its duration is respected");
    const tookOverAt = await eventually("the takeover", async () => successor.terms[0]?.startedAt);
    const waitedMs = tookOverAt - startedAt;
    assert.ok(waitedMs >= LEASE_DURATION_MS, `took over after only ${Math.round(waitedMs)} ms`);
    assert.ok(waitedMs < LEASE_DURATION_MS + 1_000, `took over after ${Math.round(waitedMs)} ms`);
    const spec = await holderOf();
    assert.equal(spec?.holderIdentity, "replica-a");
    assert.equal(spec?.leaseTransitions, 4);
  });

  it("steps down when another holder shows up in the lease, and campaigns again", async () => {
    const ns = await inNewNamespace();
    const leader = candidate("replica-a");
    await eventually("leadership", async () => leader.elector.isLeader);

    const lease = await leases.readNamespacedLease({ name: "operator", namespace: ns });
    const now = new V1MicroTime();
    await leases.replaceNamespacedLease({
      name: "operator",
      namespace: ns,
      body: { ...lease, spec: { ...lease.spec, holderIdentity: "usurper", renewTime: now } },
    });
    const takenAt = performance.now();
    const term = await eventually("the step-down", async () => leader.terms[0]?.stoppedAt);
    const steppedDownMs = term - takenAt;
    assert.ok(steppedDownMs < RENEW_DEADLINE_MS, `stepped down after ${steppedDownMs} ms`);
    assert.equal(leader.terms[0]?.signal.aborted, true);

    // The usurper never renews, so its lease expires and the candidate leads again.
    await eventually("a second term", async () => leader.terms.length === 2);
    assert.equal((await holderOf())?.holderIdentity, "replica-a");
  });

  it("stops leading before its lease can expire while the API server is unreachable", async () => {
    await inNewNamespace();
    const leader = candidate("replica-a", proxy.kubeConfig);
    await eventually("leadership", async () => leader.elector.isLeader);
    await sleep(3 * RETRY_PERIOD_MS);

    proxy.cut();
    const cutAt = performance.now();
    const stoppedAt = await eventually("the step-down", async () => leader.terms[0]?.stoppedAt);
    const steppedDownMs = stoppedAt - cutAt;
    // It last renewed before the cut and gives up renewDeadline after that renewal, while
    // other replicas wait leaseDuration from when they saw it.
    assert.ok(steppedDownMs <= RENEW_DEADLINE_MS, `stepped down after ${steppedDownMs} ms`);
    assert.ok(steppedDownMs > RENEW_DEADLINE_MS - 2 * RETRY_PERIOD_MS, "it kept trying until then");
    assert.equal(leader.terms[0]?.signal.aborted, true);
    assert.equal(leader.elector.isLeader, false);

    proxy.restore();
    await eventually("a second term", async () => leader.terms.length === 2);
    assert.equal((await holderOf())?.holderIdentity, "replica-a");
  });
});
