import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { describe, it } from "node:test";

const main = new URL("./main.ts", import.meta.url).pathname;

/** Runs main.ts with exactly this environment (plus PATH), as the container would. */
function start(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [main], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

async function finish(child: ChildProcess) {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  const [code] = await once(child, "exit");
  return { code, stdout, stderr };
}

describe("main", () => {
  it("prints one JSON summary line and exits 0 when the run is ok", async () => {
    const { code, stdout, stderr } = await finish(
      start({ LGJIT_KB_URL: "http://127.0.0.1:15432", LGJIT_RUN: "kb-refresh" }),
    );
    assert.equal(code, 0);
    assert.equal(stdout.split("\n").length, 2);
    assert.deepEqual(JSON.parse(stdout), {
      graph: "langgraph-jit-example",
      ok: true,
      run: "kb-refresh",
      connections: [{ name: "kb", url: "http://127.0.0.1:15432" }],
      calls: [],
      queries: [],
      steps: ["discover", "check-no-secrets", "call", "work", "report"],
    });
    assert.match(stderr, /^graph: discover found 1 connection$/m);
  });

  it("exits 1 with the reason, and no stack, when there is no connection", async () => {
    const { code, stdout, stderr } = await finish(start({}));
    assert.equal(code, 1);
    const summary = JSON.parse(stdout);
    assert.equal(summary.ok, false);
    assert.match(summary.error, /no connections/);
    assert.doesNotMatch(stdout + stderr, /\n\s+at /);
  });

  it("stops promptly on SIGTERM in the middle of work and exits 143", async () => {
    const child = start({ LGJIT_KB_URL: "http://127.0.0.1:15432", GRAPH_WORK_SECONDS: "30" });
    const result = finish(child);
    child.stderr?.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("graph: work for 30 s")) child.kill("SIGTERM");
    });
    const started = performance.now();
    const { code, stdout } = await result;
    assert.ok(performance.now() - started < 10_000);
    assert.equal(code, 143);
    assert.equal(JSON.parse(stdout).error, "stopped by SIGTERM");
  });
});
