// The real sidecar process against the real operator: it turns ready only once it holds a
// verified credential for its pod's run, drops it within 5 s of the run's end, and stops on
// SIGTERM within a second.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eventually } from "../lib/cluster.ts";
import { podOfRun, podToken } from "../lib/credentials.ts";
import { useOperator } from "../lib/operator.ts";
import {
  createRun,
  deleteRun,
  runManifest,
  setUpBearerApiNamespace,
  waitForPhase,
} from "../lib/runs.ts";
import { readiness, type SidecarProcess, startSidecar } from "../lib/sidecar.ts";

const access = [{ connection: "kb-api", actions: ["read" as const] }];

describe("the sidecar's credential", () => {
  const suite = useOperator("sidecar");
  const sidecars: SidecarProcess[] = [];

  before(() => setUpBearerApiNamespace(suite.ns.name, "sidecar-only"));
  after(async () => {
    for (const sidecar of sidecars) await sidecar.stop();
  });

  async function sidecarOfRun(name: string, operatorUrl?: string) {
    await createRun("alice", suite.ns.name, runManifest(name, { access }));
    const run = await waitForPhase(suite.ns.name, name, "Running");
    const pod = await podOfRun(suite.ns.name, name);
    const sidecar = await startSidecar({
      operator: suite.operator,
      run,
      pod,
      token: await podToken(pod),
      ...(operatorUrl ? { operatorUrl } : {}),
    });
    sidecars.push(sidecar);
    return sidecar;
  }

  it("turns ready with its run's credential and drops it within 5 s of the run's end", async () => {
    const sidecar = await sidecarOfRun("ready");
    await eventually("the sidecar to be ready", async () => (await readiness(sidecar)) === 200);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.match(metrics, /^lgjit_sidecar_/m);

    await deleteRun("alice", suite.ns.name, "ready");
    const ended = Date.now();
    await eventually(
      "the sidecar to drop its credential",
      async () => (await readiness(sidecar)) === 503,
      5_000,
    );
    assert.ok(Date.now() - ended <= 5_000);
  });

  it("fails closed: not ready while the operator cannot be reached or trusted", async () => {
    // An address nothing listens on, and then the operator under a name its certificate lacks.
    const unreachable = await sidecarOfRun("unreachable", "https://127.0.0.1:1");
    const untrusted = await sidecarOfRun(
      "untrusted",
      suite.operator.url.replace("127.0.0.1", "localhost"),
    );
    for (const sidecar of [unreachable, untrusted]) {
      await eventually(
        "two failed credential requests",
        async () => sidecar.output().split("no usable credential bundle").length > 2,
      );
    }
    assert.equal(await readiness(unreachable), 503);
    assert.equal(await readiness(untrusted), 503);
  });

  it("exits 0 within a second of SIGTERM", async () => {
    const sidecar = await sidecarOfRun("stopping");
    await eventually("the sidecar to be ready", async () => (await readiness(sidecar)) === 200);
    const { code, ms } = await sidecar.stop();
    assert.equal(code, 0);
    assert.ok(ms < 1_000, `took ${ms} ms`);
  });
});
