// Fail closed (DESIGN.md invariant 5, on the control plane): with the operator down, no run is
// admitted unstamped; runs wait rather than proceed, and converge once it is back.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AdmissionregistrationV1Api } from "@kubernetes/client-node";
import { expectApiError, kubeConfigFor } from "../lib/cluster.ts";
import { useOperator } from "../lib/operator.ts";
import { createRun, jobsOfRun, readRun, runManifest, waitForPhase } from "../lib/runs.ts";

describe("with the operator down", () => {
  const suite = useOperator("fail-closed", { runs: true });

  it("refuses to admit a run, storing nothing", async () => {
    await suite.operator.stop();
    const status = await expectApiError(
      createRun("alice", suite.ns.name, runManifest("unadmitted")),
    );
    assert.equal(status, 500, "the API server could not reach the webhook, and refused");
    assert.equal(await readRun(suite.ns.name, "unadmitted"), undefined);
  });

  it("admits and runs it once the operator is back", async () => {
    await suite.operator.restart();
    await createRun("alice", suite.ns.name, runManifest("admitted"));
    const run = await waitForPhase(suite.ns.name, "admitted", "Running");
    assert.equal(run.status?.requester?.username, "alice@example.com");
  });

  it("denies a run that reached the API while the webhooks were not installed", async () => {
    await suite.operator.stop();
    const api = kubeConfigFor("admin").makeApiClient(AdmissionregistrationV1Api);
    const name = `langgraph-jit-${suite.system.name}`;
    await api.deleteMutatingWebhookConfiguration({ name });
    await api.deleteValidatingWebhookConfiguration({ name });
    await createRun("alice", suite.ns.name, runManifest("unstamped"));
    await suite.operator.restart();
    const run = await waitForPhase(suite.ns.name, "unstamped", "Denied");
    const authorized = run.status?.conditions?.find((c) => c.type === "Authorized");
    assert.equal(authorized?.reason, "RequesterUnknown");
    assert.deepEqual(await jobsOfRun(suite.ns.name, "unstamped"), []);
  });
});
