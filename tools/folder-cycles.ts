// `make lint`'s check that folders depend one way: every relative import between two folders is
// an edge, and a cycle among folders fails with the imports that close it. Tests and the
// `testing/` fixtures are left out: they reach across folders to drive the real parts.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const repoRoot = resolve(import.meta.dirname, "..");
const roots = ["api", "operator", "sidecar", "cli", "e2e", "bench", "tools"];
const importPattern = /(?:\bfrom\s+|\bimport\s*\(?\s*)["'](\.{1,2}\/[^"']+)["']/g;

/** The production TypeScript files under folder. */
function* typescriptFiles(folder: string): Generator<string> {
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    if (["node_modules", "dist", "testing"].includes(entry.name) || entry.name.startsWith("."))
      continue;
    const path = join(folder, entry.name);
    if (entry.isDirectory()) yield* typescriptFiles(path);
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts")) yield path;
  }
}

/** folder -> folder it imports -> one import that shows it ("file imports target"). */
export function folderGraph(files: Iterable<string>, read: (file: string) => string) {
  const graph = new Map<string, Map<string, string>>();
  for (const file of files) {
    const from = dirname(relative(repoRoot, file));
    for (const [, specifier = ""] of read(file).matchAll(importPattern)) {
      const target = relative(repoRoot, resolve(dirname(file), specifier));
      const to = dirname(target);
      if (to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string>();
      if (!edges.has(to)) edges.set(to, `${relative(repoRoot, file)} imports ${target}`);
      graph.set(from, edges);
    }
  }
  return graph;
}

/** Each cycle once, as the folders along it (the first repeated at the end). */
export function folderCycles(graph: Map<string, Map<string, string>>): string[][] {
  const cycles: string[][] = [];
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (folder: string) => {
    const at = path.indexOf(folder);
    if (at >= 0) {
      cycles.push([...path.slice(at), folder]);
      return;
    }
    if (done.has(folder)) return;
    path.push(folder);
    for (const next of graph.get(folder)?.keys() ?? []) visit(next);
    path.pop();
    done.add(folder);
  };
  for (const folder of [...graph.keys()].sort()) visit(folder);
  return cycles;
}

if (import.meta.main) {
  const files = roots.flatMap((root) => [...typescriptFiles(join(repoRoot, root))]);
  const graph = folderGraph(files, (file) => readFileSync(file, "utf8"));
  const cycles = folderCycles(graph);
  for (const cycle of cycles) {
    console.error(`folders import each other: ${cycle.join(" -> ")}`);
    for (const [i, folder] of cycle.slice(0, -1).entries())
      console.error(`  ${graph.get(folder)?.get(cycle[i + 1] ?? "")}`);
  }
  if (cycles.length > 0) process.exit(1);
  console.log(`folders depend one way (${graph.size} folders with imports)`);
}
