// Whether an authenticated user is an RBAC-shaped subject of a policy: who may run, and who may
// approve. The operator decides with it; kubectl jit approvals lists with it.
import type { Requester, Subject } from "./v1alpha1.ts";

export function subjectMatches(subject: Subject, user: Requester, namespace: string): boolean {
  switch (subject.kind) {
    case "User":
      return subject.name === user.username;
    case "Group":
      return user.groups?.includes(subject.name) ?? false;
    case "ServiceAccount":
      // Only a user authenticated as this account: naming it in a pod template is not enough.
      return (
        user.username === `system:serviceaccount:${subject.namespace ?? namespace}:${subject.name}`
      );
  }
}
