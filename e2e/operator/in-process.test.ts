// The operator's parts assembled in this test process (operator.ts, what main.ts starts), against
// the real control plane: admission, the run controller, the credential API and a clean stop.
import assert from "node:assert/strict";
import { get } from "node:https";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import pino from "pino";
import { credentialApi } from "../../api/credentials.ts";
import { parseConfig } from "../../operator/src/config.ts";
import { loadKubeConfig } from "../../operator/src/kube/kube-config.ts";
import { type RunningOperator, startOperator } from "../../operator/src/operator.ts";
import {
  clusterDir,
  createTestNamespace,
  eventually,
  kubeConfigFor,
  type TestNamespace,
} from "../lib/cluster.ts";
import { freePort, installOperator, operatorArgs, removeWebhooks } from "../lib/operator.ts";
import {
  createRun,
  deleteRun,
  jobsOfRun,
  readRun,
  runManifest,
  setUpRunNamespace,
  waitForPhase,
} from "../lib/runs.ts";

describe("the operator started in-process", () => {
  let system: TestNamespace;
  let ns: TestNamespace;
  let operator: RunningOperator | undefined;
  let lostLease = false;

  before(async () => {
    system = await createTestNamespace("lgjit-system");
    ns = await createTestNamespace("in-process");
    const args = operatorArgs(system.name, await freePort(), await freePort(), []);
    await installOperator(args);
    const config = parseConfig(["run", ...args], {});
    const logger = pino(
      { level: "warn" },
      pino.destination(join(clusterDir, "logs", `operator-${system.name}.log`)),
    );
    operator = await startOperator(config, loadKubeConfig(config.kubeconfig), logger, () => {
      lostLease = true;
    });
    await setUpRunNamespace(ns.name);
  });
  after(async () => {
    await ns?.remove();
    await operator?.stop();
    await removeWebhooks(system.name);
    await system?.remove();
  });

  it("admits, starts and finalizes a run, and serves the credential API's keys", async () => {
    assert.ok(operator);
    const { apiAddress, healthAddress } = operator;
    const ready = await fetch(`http://127.0.0.1:${healthAddress.port}/readyz`);
    assert.equal(ready.status, 200);

    await createRun("alice", ns.name, runManifest("in-process"));
    const run = await waitForPhase(ns.name, "in-process", "Running");
    assert.equal(run.status?.requester?.username, "alice@example.com", "stamped by its webhook");
    await eventually(
      "the run's Job",
      async () => (await jobsOfRun(ns.name, "in-process")).length > 0,
    );
    assert.ok(operator.cache.runs.get(ns.name, "in-process"), "its cache sees the run");

    await deleteRun("alice", ns.name, "in-process");
    await eventually(
      "the run to be finalized",
      async () => !(await readRun(ns.name, "in-process")),
    );
    assert.equal(lostLease, false);

    const secret = await kubeConfigFor("admin")
      .makeApiClient(CoreV1Api)
      .readNamespacedSecret({ namespace: system.name, name: "langgraph-jit-webhook-tls" });
    const ca = Buffer.from(secret.data?.["ca-bundle.crt"] ?? "", "base64");
    const jwks = await new Promise<{ keys?: unknown[] }>((resolve, reject) => {
      get(`https://127.0.0.1:${apiAddress.port}${credentialApi.jwks}`, { ca }, (response) => {
        let body = "";
        response.on("data", (chunk) => {
          body += chunk;
        });
        response.on("end", () => resolve(JSON.parse(body)));
      }).on("error", reject);
    });
    assert.ok((jwks.keys?.length ?? 0) > 0, "it signs run tokens with published keys");
  });

  it("stops every part: its ports close and its caches stop", async () => {
    assert.ok(operator);
    const { apiAddress, healthAddress } = operator;
    await operator.stop();
    operator = undefined;
    for (const port of [apiAddress.port, healthAddress.port]) {
      await assert.rejects(fetch(`http://127.0.0.1:${port}/`), "nothing listens after stop");
    }
  });
});
