// Kubernetes names and label values derived from a run's name, within their length limits.
import { createHash } from "node:crypto";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";

const labelValueLimit = 63;

/** The name itself when it fits in 63 characters, else a prefix plus a hash that keeps it unique. */
export function boundedName(name: string, limit = labelValueLimit): string {
  if (name.length <= limit) return name;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 10);
  return `${name.slice(0, limit - hash.length - 1).replace(/[-.]+$/, "")}-${hash}`;
}

/** The one name of the Job and NetworkPolicy the operator makes for a run. */
export function runObjectName(run: LangGraphRun): string {
  return boundedName(run.metadata?.name ?? "");
}

/** Upper snake case for environment variable names: "kb-postgres" -> "KB_POSTGRES". */
export function envName(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]+/g, "_");
}
