// The graph's only way out is the sidecar (invariant 9), on the real node: a graph container
// probes what a compromised graph would try (the API server, the upstream past its sidecar,
// the operator with a token of its own, other pods, an address outside the grant) while DNS
// and the sidecar keep working. Once with the node's NetworkPolicy enforcer and the run's
// policy; once with in-pod capture and no enforcer at all. The same probe from a pod that is no
// run's reaches everything, so a refusal is the product's doing.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { connect, createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import {
  createTestNamespace,
  eventually,
  kubeConfigFor,
  repoRoot,
  type TestNamespace,
} from "../lib/cluster.ts";
import { installChart, localImages, uninstallChart } from "../lib/helm.ts";
import { type KbApi, startKbApi } from "../lib/kb-api.ts";
import { testNode } from "../lib/postgres.ts";
import {
  createObject,
  createRun,
  runManifest,
  setUpRunNamespace,
  waitForPhase,
} from "../lib/runs.ts";

const release = "egress";
const fullName = `${release}-langgraph-jit`;
const core = kubeConfigFor("admin").makeApiClient(CoreV1Api);

/** Turns the node's NetworkPolicy enforcement on or off. */
function enforcement(state: "on" | "off") {
  const script = join(repoRoot, "e2e", "cluster", "network-policy.sh");
  const result = spawnSync(script, [state], { encoding: "utf8" });
  assert.equal(result.status, 0, `network-policy.sh ${state}:\n${result.stdout}${result.stderr}`);
}

/** True once a TCP connection from this host opens; undefined while it does not. */
function reachable(host: string, port: number): Promise<true | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1_000 });
    const done = (value: true | undefined) => {
      socket.destroy();
      resolve(value);
    };
    socket.on("connect", () => done(true));
    socket.on("timeout", () => done(undefined));
    socket.on("error", () => done(undefined));
  });
}

/** What a compromised graph tries; prints one JSON line of outcomes. */
const probeScript = `
const net = require("node:net");
const dns = require("node:dns/promises");
const https = require("node:https");
const outcome = (promise) => promise.then((v) => v, (e) => e.code ?? e.cause?.code ?? e.message);
const connect = (host, port) => new Promise((resolve, reject) => {
  const socket = net.connect({ host, port, timeout: 3000 });
  socket.on("connect", () => { socket.destroy(); resolve("connected"); });
  socket.on("timeout", () => { socket.destroy(); reject(Object.assign(new Error(), { code: "TIMEOUT" })); });
  socket.on("error", reject);
});
// An agent of its own: the Job's NODE_USE_ENV_PROXY would send the default one to the sidecar.
const get = (url, options) => new Promise((resolve, reject) => {
  const request = https.request(url, { timeout: 3000, agent: new https.Agent(), ...options }, (response) => { response.resume(); resolve(response.statusCode); });
  request.on("timeout", () => request.destroy(Object.assign(new Error(), { code: "TIMEOUT" })));
  request.on("error", reject);
  request.end();
});
(async () => {
  const targets = JSON.parse(process.env.PROBE_TARGETS);
  const result = {};
  for (const [name, [host, port]] of Object.entries(targets)) result[name] = await outcome(connect(host, port));
  result.upstreamWithoutCredential = await outcome(get(process.env.PROBE_UPSTREAM + "/v1/docs", { ca: process.env.PROBE_UPSTREAM_CA }));
  result.operatorWithOwnToken = await outcome(get(process.env.PROBE_OPERATOR + "/v1/credentials", { method: "POST", ca: process.env.PROBE_OPERATOR_CA, headers: { authorization: "Bearer a-token-of-my-own" } }));
  result.dns = await outcome(dns.lookup("kubernetes.default.svc.cluster.local").then((a) => a.address));
  result.sidecar = process.env.LGJIT_KB_API_URL ? await outcome(fetch(process.env.LGJIT_KB_API_URL + "/v1/docs").then((r) => r.status)) : "no sidecar";
  // The upstream's real https:// URL, as libraries call it: through HTTPS_PROXY, intercepted.
  result.httpsThroughProxy = process.env.HTTPS_PROXY ? await outcome(fetch(process.env.PROBE_UPSTREAM + "/v1/docs").then((r) => r.status)) : "no proxy";
  result.deleteThroughProxy = process.env.HTTPS_PROXY ? await outcome(fetch(process.env.PROBE_UPSTREAM + "/v1/docs/1", { method: "DELETE" }).then((r) => r.status)) : "no proxy";
  console.log(JSON.stringify(result));
})();
`;

type Outcomes = Record<string, string | number>;

describe("the graph's only way out is its sidecar, on the real node", () => {
  let system: TestNamespace;
  let ns: TestNamespace;
  let kbApi: KbApi;
  let stranger: Server;
  let env: { name: string; value: string }[];

  /** The probe's outcomes from a graph container started by `start`. */
  async function probe(
    name: string,
    start: (spec: { containers: NonNullable<V1Pod["spec"]>["containers"] }) => Promise<void>,
  ) {
    await start({
      containers: [
        {
          name: "graph",
          image: localImages.graph,
          imagePullPolicy: "Never",
          command: ["node", "-e", probeScript],
          env,
        },
      ],
    });
    const pod = await eventually(
      `the probe ${name} to finish`,
      async () => {
        const pods = await core.listNamespacedPod({
          namespace: ns.name,
          labelSelector: `probe=${name}`,
        });
        const done = pods.items[0]?.status?.containerStatuses?.find((s) => s.name === "graph")
          ?.state?.terminated;
        return done ? pods.items[0] : undefined;
      },
      120_000,
    );
    const log = await core.readNamespacedPodLog({
      namespace: ns.name,
      name: pod.metadata?.name ?? "",
      container: "graph",
    });
    return JSON.parse(log.trim().split("\n").at(-1) ?? "{}") as Outcomes;
  }

  const asRun =
    (name: string) => async (spec: { containers: NonNullable<V1Pod["spec"]>["containers"] }) => {
      const manifest = runManifest(name, {
        access: [{ connection: "kb-api", actions: ["read"] }],
        maxDuration: "5m",
        template: { metadata: { labels: { probe: name } }, spec },
      });
      await createRun("alice", ns.name, manifest);
      await waitForPhase(ns.name, name, "Running", 60_000);
    };

  const asPlainPod =
    (name: string) => async (spec: { containers: NonNullable<V1Pod["spec"]>["containers"] }) => {
      await core.createNamespacedPod({
        namespace: ns.name,
        body: {
          metadata: { name, labels: { probe: name } },
          spec: { ...spec, restartPolicy: "Never", automountServiceAccountToken: false },
        },
      });
    };

  before(async () => {
    system = await createTestNamespace("lgjit-system");
    ns = await createTestNamespace("egress");
    installChart(release, system.name);
    await setUpRunNamespace(ns.name, { grants: [{ connection: "kb-api", actions: ["read"] }] }, []);
    kbApi = await startKbApi(ns.name);
    await createObject("admin", ns.name, "connections", kbApi.connection);
    // The control probe runs first: wait until kube-proxy sends the Service to its endpoint.
    const service = await core.readNamespacedService({ namespace: ns.name, name: "kb-api" });
    await eventually("Service kb-api to reach the KB API", () =>
      reachable(service.spec?.clusterIP ?? "", 8443),
    );
    // An address outside the grant: the node's own, on a port no Connection names.
    stranger = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => stranger.listen(0, testNode.address, resolve));
    const strangerPort = (stranger.address() as { port: number }).port;
    const [dnsPod] = (
      await core.listNamespacedPod({ namespace: "kube-system", labelSelector: "k8s-app=kube-dns" })
    ).items;
    const [operatorPod] = (
      await core.listNamespacedPod({
        namespace: system.name,
        labelSelector: `app.kubernetes.io/instance=${release}`,
      })
    ).items;
    const secret = await core.readNamespacedSecret({
      namespace: system.name,
      name: `${fullName}-webhook-tls`,
    });
    const kbCa = await core.readNamespacedSecret({ namespace: ns.name, name: "kb-api" });
    const decode = (data: string | undefined) => Buffer.from(data ?? "", "base64").toString("utf8");
    env = [
      {
        name: "PROBE_TARGETS",
        value: JSON.stringify({
          apiServer: ["kubernetes.default.svc.cluster.local", 443],
          upstreamDirectly: [`kb-api.${ns.name}.svc`, 8443],
          otherPod: [dnsPod?.status?.podIP, 8080],
          operatorMetrics: [operatorPod?.status?.podIP, 8080],
          outsideTheGrant: [testNode.address, strangerPort],
        }),
      },
      { name: "PROBE_UPSTREAM", value: `https://kb-api.${ns.name}.svc:8443` },
      { name: "PROBE_UPSTREAM_CA", value: decode(kbCa.data?.["ca.crt"]) },
      { name: "PROBE_OPERATOR", value: `https://${fullName}.${system.name}.svc:8443` },
      { name: "PROBE_OPERATOR_CA", value: decode(secret.data?.["ca-bundle.crt"]) },
    ];
  });

  after(async () => {
    enforcement("on");
    await kbApi?.stop();
    stranger?.close();
    await ns?.remove(120_000);
    if (system) uninstallChart(release, system.name);
    await system?.remove(120_000);
  });

  it("a pod that is no run's reaches every target (the probe's control)", async () => {
    const outcomes = await probe("control", asPlainPod("control"));
    for (const target of [
      "apiServer",
      "upstreamDirectly",
      "otherPod",
      "operatorMetrics",
      "outsideTheGrant",
    ]) {
      assert.equal(outcomes[target], "connected", `${target}: ${JSON.stringify(outcomes)}`);
    }
    assert.equal(outcomes.operatorWithOwnToken, 401);
  });

  it("with the NetworkPolicy enforced: nothing but the grant, the operator and DNS", async () => {
    const outcomes = await probe("enforced", asRun("enforced"));
    for (const target of ["apiServer", "otherPod", "operatorMetrics", "outsideTheGrant"]) {
      assert.notEqual(outcomes[target], "connected", `${target}: ${JSON.stringify(outcomes)}`);
    }
    // The policy bounds the pod, whose sidecar needs these: past it the graph holds nothing.
    assert.equal(outcomes.upstreamWithoutCredential, 401, JSON.stringify(outcomes));
    assert.equal(outcomes.operatorWithOwnToken, 401, JSON.stringify(outcomes));
    assert.equal(outcomes.dns, "10.96.0.1");
    assert.equal(outcomes.sidecar, 200, JSON.stringify(outcomes));
    assert.equal(outcomes.httpsThroughProxy, 200, JSON.stringify(outcomes));
    assert.equal(outcomes.deleteThroughProxy, 403, JSON.stringify(outcomes));
    assert.equal(kbApi.requests.filter((r) => r.method === "DELETE").length, 0);
    assert.ok(
      kbApi.requests.every(
        (r) => r.authorization === undefined || r.authorization === `Bearer ${kbApi.token}`,
      ),
    );
  });

  it("with in-pod capture and no enforcer: the graph reaches nothing but DNS and its sidecar", async () => {
    installChart(release, system.name, ["sidecar.capture=true"], "upgrade");
    enforcement("off");
    const outcomes = await probe("captured", asRun("captured"));
    for (const target of [
      "apiServer",
      "upstreamDirectly",
      "otherPod",
      "operatorMetrics",
      "outsideTheGrant",
    ]) {
      assert.notEqual(outcomes[target], "connected", `${target}: ${JSON.stringify(outcomes)}`);
    }
    assert.notEqual(outcomes.upstreamWithoutCredential, 401, JSON.stringify(outcomes));
    assert.notEqual(outcomes.operatorWithOwnToken, 401, JSON.stringify(outcomes));
    assert.equal(outcomes.dns, "10.96.0.1");
    assert.equal(outcomes.sidecar, 200, JSON.stringify(outcomes));
    assert.equal(outcomes.httpsThroughProxy, 200, JSON.stringify(outcomes));
  });
});
