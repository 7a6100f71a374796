import assert from "node:assert/strict";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { serveGraph } from "./serve.ts";

describe("the served graph", () => {
  const server = serveGraph({
    env: { LGJIT_KB_URL: "http://127.0.0.1:15432", LGJIT_RUN: "kb-server-7d9f8-x2x9q" },
  });
  let base = "";
  before(async () => {
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  it("runs the graph once per POST /invoke, each on its own thread", async () => {
    for (const n of [1, 2]) {
      const response = await fetch(`${base}/invoke`, { method: "POST" });
      assert.equal(response.status, 200);
      const summary = (await response.json()) as { ok: boolean; run: string };
      assert.equal(summary.ok, true);
      assert.equal(summary.run, `kb-server-7d9f8-x2x9q-${n}`);
    }
  });

  it("answers anything else with 404, saying what it serves", async () => {
    const response = await fetch(`${base}/`);
    assert.equal(response.status, 404);
    assert.deepEqual(await response.json(), { error: "POST /invoke runs the graph" });
  });
});
