// Reviews a run's pod template as its requester: the pod rules, the ServiceAccount the pod
// may run as, and every object it references, which the requester must be allowed to read
// themselves (a SubjectAccessReview each). A Connection's Secret is refused whoever asks.
// The admission webhook reviews a run when it is applied; the run controller again before it
// creates the Job, since policy, RBAC or the namespace may have changed meanwhile.
import type { AuthorizationV1Api, V1PodTemplateSpec } from "@kubernetes/client-node";
import {
  type Connection,
  connectionSecretNames,
  defaultRunServiceAccount,
  type Requester,
} from "../../../api/v1alpha1.ts";
import { userMay } from "../kube/access-review.ts";
import { type ObjectReference, referencedObjects } from "./pod-references.ts";
import { checkPodTemplate, type PodRuleOptions, TemplateRefused } from "./pod-rules.ts";

export interface TemplateReviewInput {
  template: V1PodTemplateSpec;
  namespace: string;
  requester: Requester;
  /** The ServiceAccounts the pod may name: those its AccessPolicies name for runs, or langgraph-jit-run. */
  serviceAccounts: ReadonlySet<string>;
  /** The namespace's Connections, whose Secrets no pod may read. */
  connections: Connection[];
}

export interface TemplateReviewDeps {
  rules: PodRuleOptions;
  /** Whether the API server's authorizer lets the requester do ref.verb on the object. */
  requesterMay(requester: Requester, namespace: string, ref: ObjectReference): Promise<boolean>;
}

/** Throws TemplateRefused naming the field; any other error means the review could not be made. */
export async function reviewTemplate(
  input: TemplateReviewInput,
  deps: TemplateReviewDeps,
): Promise<void> {
  const { template, namespace, requester } = input;
  checkPodTemplate(template, deps.rules);
  checkServiceAccount(template, input.serviceAccounts);
  const references = referencedObjects(template);

  const owners = new Map<string, string>();
  for (const connection of input.connections) {
    for (const secret of connectionSecretNames(connection)) {
      owners.set(secret, connection.metadata?.name ?? "");
    }
  }
  for (const ref of references) {
    const owner = ref.resource === "secrets" && ref.name ? owners.get(ref.name) : undefined;
    if (owner !== undefined) {
      throw new TemplateRefused(
        `${ref.field}: Secret "${ref.name}" holds the credentials of Connection "${owner}", which only langgraph-jit may read`,
      );
    }
  }

  const answers = await Promise.all(
    references.map((ref) => deps.requesterMay(requester, namespace, ref)),
  );
  const refused = references.find((_, index) => !answers[index]);
  if (refused) {
    const resource = refused.group ? `${refused.resource}.${refused.group}` : refused.resource;
    const object = refused.name ? ` "${refused.name}"` : "";
    throw new TemplateRefused(
      `${refused.field}: ${requester.username} may not ${refused.verb} ${resource}${object} in namespace "${namespace}", so the run's pod may not either`,
    );
  }
}

function checkServiceAccount(template: V1PodTemplateSpec, allowed: ReadonlySet<string>): void {
  const { serviceAccountName, serviceAccount } = template.spec ?? { containers: [] };
  if (serviceAccountName && serviceAccount && serviceAccountName !== serviceAccount) {
    throw new TemplateRefused(
      "spec.serviceAccount: differs from spec.serviceAccountName, which it is a deprecated alias of",
    );
  }
  const named = serviceAccountName || serviceAccount;
  if (named && !allowed.has(named)) {
    throw new TemplateRefused(
      `spec.serviceAccountName: a run's pod runs as the ServiceAccount its AccessPolicy names (default ${defaultRunServiceAccount}), not "${named}"`,
    );
  }
}

/** Asks the API server's authorizer, as the requester, for each reference. */
export function requesterAuthorizer(
  authorization: AuthorizationV1Api,
): TemplateReviewDeps["requesterMay"] {
  return (requester, namespace, ref) =>
    userMay(authorization, requester, {
      namespace,
      verb: ref.verb,
      group: ref.group,
      resource: ref.resource,
      ...(ref.name ? { name: ref.name } : {}),
    });
}
