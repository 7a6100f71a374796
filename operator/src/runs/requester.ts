// Who asked for a run: the admission webhook stamps it from the API server's authentication;
// everything after reads it back from the run's annotation, never from anything else.
import { annotations, type LangGraphRun, type Requester } from "../../../api/v1alpha1.ts";
import { stampedUser } from "../policy/stamped-user.ts";

/** The requester stamped on a run, or undefined when it is missing or malformed. */
export function requesterOf(run: LangGraphRun): Requester | undefined {
  return stampedUser(run, annotations.requester);
}
