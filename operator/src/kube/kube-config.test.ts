import assert from "node:assert/strict";
import { test } from "node:test";
import { KubeConfig, RequestContext } from "@kubernetes/client-node";
import { PooledKubeConfig } from "./kube-config.ts";

// A cluster CA makes the client build its own Agent (without TLS settings it uses the global one).
const caData = Buffer.from(
  "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
).toString("base64");
const config = {
  clusters: [{ name: "c", server: "https://127.0.0.1:6443", skipTLSVerify: false, caData }],
  users: [{ name: "u", token: "t" }],
  contexts: [{ name: "ctx", cluster: "c", user: "u" }],
  currentContext: "ctx",
};

async function dispatcherOf(kc: KubeConfig) {
  const context = new RequestContext("https://127.0.0.1:6443/api", "GET" as never);
  await kc.applySecurityAuthentication(context);
  return context.getDispatcher();
}

test("reuses one Agent for every request of the same identity", async () => {
  const kc = new PooledKubeConfig();
  kc.loadFromOptions(config);
  const first = await dispatcherOf(kc);
  assert.ok(first);
  assert.equal(await dispatcherOf(kc), first);
});

test("the stock KubeConfig makes a new Agent per request (why the pool exists)", async () => {
  const kc = new KubeConfig();
  kc.loadFromOptions(config);
  assert.notEqual(await dispatcherOf(kc), await dispatcherOf(kc));
});

test("a different identity gets its own Agent", async () => {
  const kc = new PooledKubeConfig();
  kc.loadFromOptions({
    ...config,
    users: [...config.users, { name: "v", token: "w" }],
    contexts: [...config.contexts, { name: "other", cluster: "c", user: "v" }],
  });
  const first = await dispatcherOf(kc);
  kc.setCurrentContext("other");
  assert.notEqual(await dispatcherOf(kc), first);
});
