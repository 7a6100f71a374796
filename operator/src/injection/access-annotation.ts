// The annotation a tagged pod names its access with, `langgraph-jit.dev/access`, parsed
// strictly: "kb-api=read; kb-postgres=read,write". Each entry is a Connection of the pod's
// namespace and the actions it needs there, as a LangGraphRun's spec.access says them.
import type { Action, RunAccess } from "../../../api/v1alpha1.ts";

const actions: ReadonlySet<string> = new Set(["read", "write", "ddl", "admin"]);
/** A Connection's name: a DNS-1123 subdomain. */
const connectionName = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** As many as a run may ask for (the LangGraphRun schema's maxItems). */
const maxEntries = 64;
const maxLength = 4096;

export class AccessAnnotationError extends Error {
  override name = "AccessAnnotationError";
}

/** The access a pod's annotation asks for; throws AccessAnnotationError saying what is wrong. */
export function parseAccessAnnotation(text: string | undefined): RunAccess[] {
  const fail = (why: string): never => {
    throw new AccessAnnotationError(
      `${why}; write it as "CONNECTION=ACTION[,ACTION]; ..." such as "kb-api=read; kb-postgres=read,write"`,
    );
  };
  if (text === undefined || text.trim() === "") return fail("it is missing or empty");
  if (text.length > maxLength) return fail(`it is longer than ${maxLength} characters`);
  // One trailing ";" is tolerated, as YAML authors write lists; an empty entry between two is not.
  const entries = text.trim().replace(/;$/, "").split(";");
  if (entries.length > maxEntries) return fail(`it names more than ${maxEntries} connections`);
  const seen = new Set<string>();
  return entries.map((raw, index) => {
    const entry = raw.trim();
    const at = `entry ${index + 1} ("${entry}")`;
    const [name = "", list, ...extra] = entry.split("=");
    if (list === undefined || extra.length > 0) return fail(`${at} is not CONNECTION=ACTIONS`);
    const connection = name.trim();
    if (!connectionName.test(connection) || connection.length > 253) {
      return fail(`${at}: "${connection}" is not a Connection name`);
    }
    if (seen.has(connection)) return fail(`${at}: connection "${connection}" is named twice`);
    seen.add(connection);
    const named = list.split(",").map((a) => a.trim());
    const unknown = named.find((a) => !actions.has(a));
    if (unknown !== undefined) {
      return fail(`${at}: "${unknown}" is not an action (read, write, ddl, admin)`);
    }
    if (new Set(named).size !== named.length) return fail(`${at} names an action twice`);
    return { connection, actions: named as Action[] };
  });
}
