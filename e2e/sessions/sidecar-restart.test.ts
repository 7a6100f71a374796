// Nothing recorded is lost (DESIGN.md 5.6): the real sidecar, taking a stream of requests it
// refuses, is killed with SIGKILL mid-stream and started again on the same state folder (the
// pod's emptyDir). The real operator's store then holds every event once, numbered without a
// gap, and at least every refusal the graph was answered.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import { Agent, fetch } from "undici";
import type { LangGraphRun } from "../../api/v1alpha1.ts";
import { SqliteSessionStore } from "../../operator/src/sessions/sqlite-store.ts";
import { clusterDir, eventually } from "../lib/cluster.ts";
import { podOfRun, podToken } from "../lib/credentials.ts";
import { freePort, useOperator } from "../lib/operator.ts";
import { createRun, runManifest, setUpBearerApiNamespace, waitForPhase } from "../lib/runs.ts";
import { readiness, type SidecarProcess, startSidecar } from "../lib/sidecar.ts";

describe("session events across a sidecar killed and restarted", () => {
  const suite = useOperator("restart");
  let run: LangGraphRun;
  let pod: V1Pod;
  let stateDir: string;
  let port: number;

  before(async () => {
    await setUpBearerApiNamespace(suite.ns.name, "restart-token");
    const access = [{ connection: "kb-api", actions: ["read" as const] }];
    await createRun("alice", suite.ns.name, runManifest("restarted", { access }));
    run = await waitForPhase(suite.ns.name, "restarted", "Running");
    pod = await podOfRun(suite.ns.name, "restarted");
    stateDir = mkdtempSync(join(tmpdir(), "lgjit-restart-"));
    port = await freePort();
  });
  after(() => rmSync(stateDir, { recursive: true, force: true }));

  async function sidecar(): Promise<SidecarProcess> {
    const started = await startSidecar({
      operator: suite.operator,
      run,
      pod,
      token: await podToken(pod),
      stateDir,
      listeners: { "kb-api": port },
    });
    await eventually("the sidecar to be ready", async () => (await readiness(started)) === 200);
    return started;
  }

  /**
   * Writes the grant does not allow, 8 at a time: each is refused (403) and recorded. With
   * killAfter, the sidecar is killed once that many were answered, while others are in flight.
   */
  async function refusedWrites(
    total: number,
    killAfter?: { answered: number; kill: () => Promise<void> },
  ) {
    let answered = 0;
    let sent = 0;
    let killed = false;
    // A pool of its own: connections to a killed sidecar must not be reused for the next one.
    const dispatcher = new Agent();
    const worker = async () => {
      while (sent < total) {
        const path = `/v1/docs/${sent++}`;
        const response = await fetch(`http://127.0.0.1:${port}${path}`, {
          method: "POST",
          body: "{}",
          dispatcher,
        }).catch(() => undefined);
        if (response?.status === 403) answered++;
        await response?.body?.cancel();
        if (killAfter && !killed && answered >= killAfter.answered) {
          killed = true;
          await killAfter.kill();
        }
        if (killed && !response) return; // the sidecar is gone
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    await dispatcher.close();
    return answered;
  }

  it("stores every event once, without a gap, and every refusal the graph saw", async () => {
    const first = await sidecar();
    const answeredBefore = await refusedWrites(400, { answered: 150, kill: () => first.kill() });
    const second = await sidecar();
    const answeredAfter = await refusedWrites(100);
    await second.stop();

    const store = new SqliteSessionStore(
      join(clusterDir, "logs", `sessions-${suite.system.name}.db`),
    );
    try {
      const uid = run.metadata?.uid ?? "";
      const events = await eventually(
        "the events at the operator",
        async () => {
          const stored = await store.list(uid);
          const denied = stored.filter((event) => event.kind === "denied").length;
          return denied >= answeredBefore + answeredAfter ? stored : undefined;
        },
        20_000,
      );
      assert.deepEqual(
        events.map((event) => event.seq),
        Array.from({ length: events.length }, (_, i) => i + 1),
        "sequence numbers have a gap or a repeat",
      );
      assert.ok(
        answeredBefore > 0 && answeredBefore < 400,
        `${answeredBefore} answered before the kill`,
      );
      assert.equal(answeredAfter, 100);
    } finally {
      await store.close();
    }
  });
});
