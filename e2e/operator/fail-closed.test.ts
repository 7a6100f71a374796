// Fail closed (DESIGN.md invariant 5, on the control plane): with the operator down, no run is
// admitted unstamped; runs wait rather than proceed, and converge once it is back.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { AdmissionregistrationV1Api } from "@kubernetes/client-node";
import { createTestNamespace, expectApiError, kubeConfigFor } from "../lib/cluster.ts";
import { type OperatorProcess, startOperator } from "../lib/operator.ts";
import {
  createRun,
  jobsOfRun,
  readRun,
  runManifest,
  setUpRunNamespace,
  waitForPhase,
} from "../lib/runs.ts";

describe("with the operator down", () => {
  let system: Awaited<ReturnType<typeof createTestNamespace>>;
  let ns: Awaited<ReturnType<typeof createTestNamespace>>;
  let operator: OperatorProcess;

  before(async () => {
    system = await createTestNamespace("lgjit-system");
    ns = await createTestNamespace("fail-closed");
    operator = await startOperator(system.name);
    await setUpRunNamespace(ns.name);
  });
  after(async () => {
    await ns?.remove();
    await operator?.remove();
    await system?.remove();
  });

  it("refuses to admit a run, storing nothing", async () => {
    await operator.stop();
    const status = await expectApiError(createRun("alice", ns.name, runManifest("unadmitted")));
    assert.equal(status, 500, "the API server could not reach the webhook, and refused");
    assert.equal(await readRun(ns.name, "unadmitted"), undefined);
  });

  it("admits and runs it once the operator is back", async () => {
    await operator.restart();
    await createRun("alice", ns.name, runManifest("admitted"));
    const run = await waitForPhase(ns.name, "admitted", "Running");
    assert.equal(run.status?.requester?.username, "alice@example.com");
  });

  it("denies a run that reached the API while the webhooks were not installed", async () => {
    await operator.stop();
    const api = kubeConfigFor("admin").makeApiClient(AdmissionregistrationV1Api);
    const name = `langgraph-jit-${system.name}`;
    await api.deleteMutatingWebhookConfiguration({ name });
    await api.deleteValidatingWebhookConfiguration({ name });
    await createRun("alice", ns.name, runManifest("unstamped"));
    await operator.restart();
    const run = await waitForPhase(ns.name, "unstamped", "Denied");
    const authorized = run.status?.conditions?.find((c) => c.type === "Authorized");
    assert.equal(authorized?.reason, "RequesterUnknown");
    assert.deepEqual(await jobsOfRun(ns.name, "unstamped"), []);
  });
});
