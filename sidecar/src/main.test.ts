// The sidecar as the kubelet runs it: sidecar/bin/sidecar in its own process against a real
// HTTPS credential API. Ready once it holds a credential, and gone within a second of SIGTERM
// (its idle memory is measured by `make bench`).
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CredentialApiServer, testIdentity } from "./testing/credential-api-server.ts";
import { freePort, httpGet, waitFor } from "./testing/test-helpers.ts";

const launcher = new URL("../bin/sidecar", import.meta.url).pathname;

function environment(extra: Record<string, string>): NodeJS.ProcessEnv {
  const { NODE_TEST_CONTEXT: _, ...inherited } = process.env;
  return { ...inherited, ...extra };
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

it("refuses an incomplete environment, naming the variable", async () => {
  const child = spawn(launcher, [], {
    env: environment({ LGJIT_RUN: "kb-refresh", LGJIT_RUN_UID: "run-uid" }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk;
  });
  const { code } = await exited(child);
  assert.equal(code, 2);
  assert.match(output, /invalid configuration: LGJIT_OPERATOR_URL is not set/);
});

describe("a running sidecar", () => {
  let server: CredentialApiServer;
  let directory: string;
  let child: ChildProcess;
  let adminUrl: string;
  let listenerPort: number;
  let output = "";

  before(async () => {
    server = await CredentialApiServer.create();
    await server.listen();
    directory = await mkdtemp(join(tmpdir(), "lgjit-sidecar-main-"));
    await writeFile(join(directory, "token"), "pod-token\n");
    const adminPort = await freePort();
    listenerPort = await freePort();
    adminUrl = `http://127.0.0.1:${adminPort}`;
    child = spawn(launcher, [], {
      env: environment({
        LGJIT_RUN: testIdentity.run,
        LGJIT_RUN_UID: testIdentity.runUid,
        LGJIT_NAMESPACE: testIdentity.namespace,
        LGJIT_POD_NAME: testIdentity.podName,
        LGJIT_POD_UID: testIdentity.podUid,
        LGJIT_OPERATOR_URL: server.url,
        LGJIT_OPERATOR_CA: server.caPem,
        LGJIT_TOKEN_FILE: join(directory, "token"),
        LGJIT_STATE_DIR: directory,
        LGJIT_TRUST_DIR: directory,
        LGJIT_LISTENERS: JSON.stringify({ "kb-api": listenerPort }),
        LGJIT_ADMIN_PORT: String(adminPort),
      }),
      stdio: ["ignore", "pipe", "inherit"],
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    await waitFor(
      "/ready 200",
      async () => (await httpGet(`${adminUrl}/ready`).catch(() => undefined))?.status === 200,
      15_000,
    );
  });
  after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await server.close();
    await rm(directory, { recursive: true, force: true });
  });

  it("is the node process itself, so the kubelet's signals reach it", async () => {
    assert.match(await readlink(`/proc/${child.pid}/exe`), /\/node$/);
    assert.equal((await httpGet(`${adminUrl}/ready`)).status, 200);
  });

  it("has written the pod CA's trust files for the graph before it is ready", async () => {
    const ca = new X509Certificate(await readFile(join(directory, "ca.pem"), "utf8"));
    assert.equal(ca.ca, true);
    assert.match(ca.subject, /langgraph-jit pod CA/);
    const bundle = await readFile(join(directory, "ca-bundle.pem"), "utf8");
    assert.ok(bundle.startsWith(ca.toString().trim()));
    assert.ok(bundle.split("BEGIN CERTIFICATE").length > 50, "the public roots are in the bundle");
    assert.doesNotMatch(bundle, /PRIVATE KEY/);
  });

  it("serves its HTTP connection on loopback, failing closed on an unreachable upstream", async () => {
    const answer = await httpGet(`http://127.0.0.1:${listenerPort}/v1/docs`);
    assert.equal(answer.status, 502);
    assert.equal(JSON.parse(answer.body).reason, "UpstreamUnavailable");
    await waitFor("the request's session event at the operator", () =>
      [...server.events.values()].some(
        (event) => event.kind === "error" && event.path === "/v1/docs" && event.seq === 1,
      ),
    );
  });

  it("exits 0 within a second of SIGTERM, while a status long-poll is held", async () => {
    await waitFor("a held status poll", () => server.heldPolls === 1);
    const stopped = exited(child);
    const sentAt = Date.now();
    child.kill("SIGTERM");
    const { code, signal } = await stopped;
    const tookMs = Date.now() - sentAt;
    assert.deepEqual({ code, signal }, { code: 0, signal: null });
    assert.ok(tookMs < 1_000, `exited after ${tookMs} ms`);
    assert.match(output, /"msg":"stopped"/);
    await waitFor("the long-poll connection to close", () => server.heldPolls === 0, 1_000);
  });
});
