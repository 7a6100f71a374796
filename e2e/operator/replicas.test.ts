// Several operator replicas: one reconciles (the Lease holder), every one serves the webhooks,
// and when the leader dies another takes over.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestNamespace, eventually } from "../lib/cluster.ts";
import { type OperatorProcess, startOperator } from "../lib/operator.ts";
import { createRun, runManifest, setUpRunNamespace, waitForPhase } from "../lib/runs.ts";
import { type ServiceProxy, startServiceProxy } from "../lib/service-proxy.ts";

async function isLeader(operator: OperatorProcess): Promise<boolean> {
  const response = await fetch(`${operator.metricsUrl}/metrics`).catch(() => undefined);
  if (!response?.ok) return false;
  return /^lgjit_leader 1$/m.test(await response.text());
}

describe("operator replicas", () => {
  let system: Awaited<ReturnType<typeof createTestNamespace>>;
  let ns: Awaited<ReturnType<typeof createTestNamespace>>;
  let replicas: OperatorProcess[] = [];
  let service: ServiceProxy;

  before(async () => {
    system = await createTestNamespace("lgjit-system");
    ns = await createTestNamespace("replicas");
    service = await startServiceProxy(() => replicas.map((r) => r.listenPort));
    const url = ["--webhook-url", `https://127.0.0.1:${service.port}`];
    replicas = [await startOperator(system.name, url), await startOperator(system.name, url)];
    await setUpRunNamespace(ns.name);
  });
  after(async () => {
    await ns?.remove();
    for (const replica of replicas) await replica.remove();
    await service?.close();
    await system?.remove();
  });

  it("elects exactly one replica to reconcile", async () => {
    const leaders = await eventually("one leader", async () => {
      const flags = await Promise.all(replicas.map(isLeader));
      return flags.filter(Boolean).length === 1 ? flags : undefined;
    });
    assert.equal(leaders.filter(Boolean).length, 1);
    await createRun("alice", ns.name, runManifest("first-run"));
    await waitForPhase(ns.name, "first-run", "Running");
  });

  it("keeps admitting and reconciling runs when the leader dies", async () => {
    const flags = await Promise.all(replicas.map(isLeader));
    const leader = replicas[flags.indexOf(true)];
    const follower = replicas[flags.indexOf(false)];
    assert.ok(leader && follower);
    await leader.kill();
    // Admission goes to the surviving replica at once; reconciling waits for the Lease to lapse.
    await createRun("alice", ns.name, runManifest("after-failover"));
    await waitForPhase(ns.name, "after-failover", "Running", 45_000);
    assert.equal(await isLeader(follower), true);
  });
});
