// A requester and LangGraphRuns for unit tests: alice of ml-platform asks for read access to the
// knowledge base, as in DESIGN.md's examples.
import { annotations, type LangGraphRun, type Requester } from "../../../api/v1alpha1.ts";

export const alice: Requester = {
  username: "alice@example.com",
  uid: "a-1",
  groups: ["ml-platform", "system:authenticated"],
};

/** A run in `agents` stamped with `requester` (none when undefined), reading kb-postgres. */
export function testRun(
  options: { name?: string; requester?: Requester; annotations?: Record<string, string> } = {},
): LangGraphRun {
  const all: Record<string, string> = { ...options.annotations };
  if (options.requester) all[annotations.requester] = JSON.stringify(options.requester);
  return {
    apiVersion: "langgraph-jit.dev/v1alpha1",
    kind: "LangGraphRun",
    metadata: {
      name: options.name ?? "r",
      namespace: "agents",
      uid: `uid-${options.name ?? "r"}`,
      generation: 1,
      ...(Object.keys(all).length > 0 ? { annotations: all } : {}),
    },
    spec: {
      template: { spec: { containers: [{ name: "graph", image: "g" }] } },
      access: [{ connection: "kb-postgres", actions: ["read"] }],
      maxDuration: "30m",
    },
  };
}
