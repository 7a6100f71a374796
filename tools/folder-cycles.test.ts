import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";
import { folderCycles, folderGraph } from "./folder-cycles.ts";

const repoRoot = resolve(import.meta.dirname, "..");
const file = (path: string) => join(repoRoot, path);

describe("folder-cycles", () => {
  it("finds two folders that import each other and names the imports", () => {
    const sources: Record<string, string> = {
      [file("operator/src/runs/a.ts")]: 'import { b } from "../credentials/b.ts";',
      [file("operator/src/credentials/b.ts")]: 'import type { A } from "../runs/a.ts";',
      [file("operator/src/kube/c.ts")]: 'export * from "./d.ts";',
    };
    const graph = folderGraph(Object.keys(sources), (path) => sources[path] ?? "");
    assert.deepEqual(folderCycles(graph), [
      ["operator/src/credentials", "operator/src/runs", "operator/src/credentials"],
    ]);
    assert.equal(
      graph.get("operator/src/runs")?.get("operator/src/credentials"),
      "operator/src/runs/a.ts imports operator/src/credentials/b.ts",
    );
  });

  it("accepts folders that depend one way, through dynamic imports too", () => {
    const sources: Record<string, string> = {
      [file("operator/src/main.ts")]: 'const m = await import("./runs/a.ts");',
      [file("operator/src/runs/a.ts")]: 'import { k } from "../kube/k.ts";',
      [file("operator/src/credentials/b.ts")]: 'import { a } from "../runs/a.ts";',
    };
    const graph = folderGraph(Object.keys(sources), (path) => sources[path] ?? "");
    assert.equal(graph.get("operator/src")?.has("operator/src/runs"), true);
    assert.deepEqual(folderCycles(graph), []);
  });
});
