// ResilientInformer against the real API server, reached through a proxy the test can break.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CoreV1Api, type KubeConfig, type V1ConfigMap } from "@kubernetes/client-node";
import pino from "pino";
import { ResilientInformer } from "../../operator/src/kube/informer.ts";
import { createTestNamespace, eventually, kubeConfigFor } from "../lib/cluster.ts";
import { ApiServerProxy } from "./api-server-proxy.ts";

const admin = kubeConfigFor("admin");
const core = admin.makeApiClient(CoreV1Api);

interface LogLine {
  level: number;
  msg: string;
  reason?: string;
}

function configMapInformer(
  kc: KubeConfig,
  namespace: string,
  extra: { relistIntervalMs?: number },
) {
  const logs: LogLine[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const api = kc.makeApiClient(CoreV1Api);
  const informer = new ResilientInformer<V1ConfigMap>({
    kc,
    name: "configmaps",
    path: `/api/v1/namespaces/${namespace}/configmaps`,
    list: () => api.listNamespacedConfigMap({ namespace }),
    maxBackoffMs: 500,
    logger,
    ...extra,
  });
  const changes: string[] = [];
  informer.onChange((cm) => changes.push(cm.metadata?.name ?? ""));
  const restarts = () => logs.filter((line) => line.level === 40).length;
  return { informer, logs, changes, restarts };
}

function configMap(name: string, value: string): V1ConfigMap {
  return { metadata: { name }, data: { value } };
}

describe("ResilientInformer", () => {
  let proxy: ApiServerProxy;
  let namespace: { name: string; remove: () => Promise<void> };
  let stopInformer: (() => void) | undefined;

  before(async () => {
    proxy = await ApiServerProxy.start(admin);
  });
  after(async () => {
    await proxy.close();
  });
  afterEach(async () => {
    stopInformer?.();
    proxy.restore();
    await namespace?.remove();
  });

  async function setUp(extra: { relistIntervalMs?: number } = {}) {
    namespace = await createTestNamespace("informer");
    const test = configMapInformer(proxy.kubeConfig, namespace.name, extra);
    stopInformer = () => test.informer.stop();
    return test;
  }

  const ns = () => namespace.name;
  const dataValue = (informer: ResilientInformer<V1ConfigMap>, name: string) =>
    informer.get(ns(), name)?.data?.value;

  it("follows configmaps as they are created, updated and deleted", async () => {
    const { informer, changes } = await setUp();
    await core.createNamespacedConfigMap({ namespace: ns(), body: configMap("listed", "1") });
    await informer.start();
    assert.equal(informer.synced, true);
    assert.equal(dataValue(informer, "listed"), "1", "start resolves with the list in the cache");

    await core.createNamespacedConfigMap({ namespace: ns(), body: configMap("watched", "1") });
    await eventually("the created configmap", async () => dataValue(informer, "watched"));

    await core.replaceNamespacedConfigMap({
      name: "watched",
      namespace: ns(),
      body: configMap("watched", "2"),
    });
    await eventually("the update", async () => dataValue(informer, "watched") === "2");

    await core.deleteNamespacedConfigMap({ name: "watched", namespace: ns() });
    await eventually("the deletion", async () => informer.get(ns(), "watched") === undefined);
    assert.deepEqual(
      informer
        .list(ns())
        .map((cm) => cm.metadata?.name)
        .sort(),
      ["kube-root-ca.crt", "listed"],
    );
    assert.deepEqual(
      changes.filter((name) => name === "watched"),
      ["watched", "watched", "watched"],
      "one change each for the add, the update and the delete",
    );
  });

  it("restarts after losing the API server and catches up on what changed meanwhile", async () => {
    const { informer, changes, restarts } = await setUp();
    await core.createNamespacedConfigMap({ namespace: ns(), body: configMap("kept", "1") });
    await core.createNamespacedConfigMap({ namespace: ns(), body: configMap("doomed", "1") });
    await informer.start();

    proxy.cut();
    // The watch fails first, then at least one restart fails while the server is unreachable.
    await eventually("failed restarts", async () => restarts() >= 2, 10_000);
    await core.replaceNamespacedConfigMap({
      name: "kept",
      namespace: ns(),
      body: configMap("kept", "2"),
    });
    await core.deleteNamespacedConfigMap({ name: "doomed", namespace: ns() });
    await core.createNamespacedConfigMap({ namespace: ns(), body: configMap("new", "1") });
    await sleep(300);
    assert.equal(dataValue(informer, "kept"), "1", "the last known state is served while down");
    assert.ok(informer.get(ns(), "doomed"), "nothing is dropped while the server is unreachable");
    const changesWhileDown = changes.length;

    proxy.restore();
    await eventually("the cache to catch up", async () => {
      const caughtUp =
        dataValue(informer, "kept") === "2" &&
        informer.get(ns(), "doomed") === undefined &&
        dataValue(informer, "new") === "1";
      return caughtUp || undefined;
    });
    assert.ok(
      changes.slice(changesWhileDown).includes("doomed"),
      "the object deleted while down is reported so a consumer can reconcile it away",
    );

    await core.createNamespacedConfigMap({ namespace: ns(), body: configMap("after", "1") });
    await eventually("the watch to work again", async () => dataValue(informer, "after"));
  });

  it("keeps retrying a first list that fails, and syncs once the server is reachable", async () => {
    const { informer, restarts } = await setUp();
    proxy.cut();
    const started = informer.start();
    await eventually("a failed first list", async () => restarts() >= 1, 10_000);
    assert.equal(informer.synced, false);
    proxy.restore();
    await started;
    assert.ok(informer.get(ns(), "kube-root-ca.crt"));
  });

  it("re-lists when its watch goes silent, long before the client's 30 s watch timeout", async () => {
    const { informer, logs } = await setUp({ relistIntervalMs: 3_000 });
    await informer.start();
    await core.createNamespacedConfigMap({ namespace: ns(), body: configMap("before", "1") });
    await eventually("the watch to deliver", async () => dataValue(informer, "before"));

    const relists = () => logs.filter((line) => line.reason === "periodic re-list").length;
    const relistsBefore = relists();
    // Stall right after a re-list, so the next one is still seconds away.
    await eventually("a periodic re-list", async () => relists() > relistsBefore);
    proxy.stall();
    await core.createNamespacedConfigMap({ namespace: ns(), body: configMap("unseen", "1") });
    await sleep(300);
    // Only a connection opened after the stall can bring it: on a loaded machine the re-list
    // logged above may open its watch only now, or the next re-list may come early.
    if (proxy.openedSinceStall === 0) {
      assert.equal(informer.get(ns(), "unseen"), undefined, "the stalled watch delivers nothing");
    }
    await eventually("the re-list", async () => dataValue(informer, "unseen"), 10_000);
  });
});
