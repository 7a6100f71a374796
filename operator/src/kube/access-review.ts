// Asks the API server's authorizer whether a user may do something, as that user: the
// operator acts for requesters and readers, and must never lend them its own rights.
import type { AuthorizationV1Api, V1ResourceAttributes } from "@kubernetes/client-node";

/** A user as the API server authenticated them. */
export interface AuthenticatedUser {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/** Whether the authorizer allows it; an unreachable API server is an error, never a yes. */
export async function userMay(
  authorization: AuthorizationV1Api,
  user: AuthenticatedUser,
  resourceAttributes: V1ResourceAttributes,
): Promise<boolean> {
  const review = await authorization.createSubjectAccessReview({
    body: {
      spec: {
        user: user.username,
        ...(user.uid ? { uid: user.uid } : {}),
        groups: user.groups ?? [],
        ...(user.extra ? { extra: user.extra } : {}),
        resourceAttributes,
      },
    },
  });
  return review.status?.allowed === true && review.status.denied !== true;
}
