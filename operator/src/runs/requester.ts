// Who asked for a run: the admission webhook stamps it from the API server's authentication;
// everything after reads it back from the run's annotation, never from anything else.
import { annotations, type LangGraphRun, type Requester } from "../../../api/v1alpha1.ts";

const isStringList = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((item) => typeof item === "string");

/** The requester stamped on a run, or undefined when it is missing or malformed. */
export function requesterOf(run: LangGraphRun): Requester | undefined {
  const raw = run.metadata?.annotations?.[annotations.requester];
  if (!raw) return undefined;
  try {
    const parsed = JSON.parse(raw) as Partial<Requester>;
    if (typeof parsed.username !== "string" || parsed.username === "") return undefined;
    const extra = parsed.extra;
    if (
      extra !== undefined &&
      (typeof extra !== "object" || extra === null || !Object.values(extra).every(isStringList))
    ) {
      return undefined;
    }
    return {
      username: parsed.username,
      uid: typeof parsed.uid === "string" ? parsed.uid : "",
      groups: isStringList(parsed.groups) ? parsed.groups : [],
      ...(extra ? { extra } : {}),
    };
  } catch {
    return undefined;
  }
}
