// Who asked for a run: the admission webhook stamps it from the API server's authentication;
// everything after reads it back from the run's annotation, never from anything else.
import { annotations, type LangGraphRun, type Requester } from "../../../api/v1alpha1.ts";
import { stampedUser } from "../policy/stamped-user.ts";

/** The identity the API server gives a pod's ServiceAccount token: a tagged pod's requester. */
export function serviceAccountRequester(namespace: string, account: string): Requester {
  return {
    username: `system:serviceaccount:${namespace}:${account}`,
    uid: "",
    groups: [
      "system:serviceaccounts",
      `system:serviceaccounts:${namespace}`,
      "system:authenticated",
    ],
  };
}

/** The requester stamped on a run, or undefined when it is missing or malformed. */
export function requesterOf(run: LangGraphRun): Requester | undefined {
  return stampedUser(run, annotations.requester);
}
