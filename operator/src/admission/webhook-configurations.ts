// The Mutating- and ValidatingWebhookConfigurations that send LangGraphRun admission to us.
import type {
  AdmissionregistrationV1WebhookClientConfig,
  V1MutatingWebhookConfiguration,
  V1ValidatingWebhookConfiguration,
} from "@kubernetes/client-node";
import { group, labels, resources, version } from "../../../api/v1alpha1.ts";
import { sidecarContainerName } from "../runs/pod-contract.ts";

export const webhookPaths = {
  mutateRun: "/admission/mutate/langgraphruns",
  validateRun: "/admission/validate/langgraphruns",
  validateRunStatus: "/admission/validate/langgraphruns/status",
  mutateApproval: "/admission/mutate/approvals",
  validateApproval: "/admission/validate/approvals",
  validateHeldCommand: "/admission/validate/heldcommands",
  validatePolicy: "/admission/validate/accesspolicies",
  validateEphemeralContainers: "/admission/validate/pods/ephemeralcontainers",
  mutateTaggedPod: "/admission/mutate/pods",
  validatePodConnect: "/admission/validate/pods/connect",
} as const;

export interface WebhookTarget {
  name: string;
  /** The operator's own namespace, excluded so a broken operator can still be repaired. */
  namespace: string;
  caBundlePem: string;
  /** A base URL for operators running outside the cluster; else the Service. */
  url?: string;
  service?: { name: string; port: number };
  /** Whether tagged workloads' pods are sent to us for injection. */
  injectPods?: boolean;
}

function clientConfig(
  target: WebhookTarget,
  path: string,
): AdmissionregistrationV1WebhookClientConfig {
  const caBundle = Buffer.from(target.caBundlePem).toString("base64");
  if (target.url) return { url: `${target.url.replace(/\/$/, "")}${path}`, caBundle };
  const service = target.service ?? { name: "langgraph-jit", port: 8443 };
  return {
    service: { namespace: target.namespace, name: service.name, port: service.port, path },
    caBundle,
  };
}

const common = (target: WebhookTarget) => ({
  admissionReviewVersions: ["v1"],
  sideEffects: "None",
  // Fail closed: nothing is admitted unless we checked it.
  failurePolicy: "Fail",
  timeoutSeconds: 5,
  matchPolicy: "Equivalent",
  namespaceSelector: {
    matchExpressions: [
      { key: "kubernetes.io/metadata.name", operator: "NotIn", values: [target.namespace] },
    ],
  },
});

const runRule = (operations: string[], resource: string) => ({
  apiGroups: [group],
  apiVersions: [version],
  operations,
  resources: [resource],
  scope: "Namespaced",
});

export function mutatingConfiguration(target: WebhookTarget): V1MutatingWebhookConfiguration {
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: { name: target.name },
    webhooks: [
      {
        name: `requester.${group}`,
        clientConfig: clientConfig(target, webhookPaths.mutateRun),
        reinvocationPolicy: "Never",
        ...common(target),
        rules: [runRule(["CREATE", "UPDATE"], resources.runs)],
      },
      {
        name: `approver.${group}`,
        clientConfig: clientConfig(target, webhookPaths.mutateApproval),
        reinvocationPolicy: "Never",
        ...common(target),
        rules: [runRule(["CREATE"], resources.approvals)],
      },
      ...(target.injectPods ? [taggedPodWebhook(target)] : []),
    ],
  };
}

/**
 * Only pods that ask for injection in namespaces that allow it reach us: an operator outage
 * then blocks those pods (fail closed: they would run without their sidecar) and no other pod
 * of the cluster.
 */
function taggedPodWebhook(target: WebhookTarget) {
  return {
    name: `pods.${group}`,
    clientConfig: clientConfig(target, webhookPaths.mutateTaggedPod),
    reinvocationPolicy: "Never",
    ...common(target),
    namespaceSelector: {
      matchLabels: { [labels.inject]: "enabled" },
      matchExpressions: common(target).namespaceSelector.matchExpressions,
    },
    objectSelector: { matchLabels: { [labels.inject]: "true" } },
    rules: [
      {
        apiGroups: [""],
        apiVersions: ["v1"],
        operations: ["CREATE"],
        resources: ["pods"],
        scope: "Namespaced",
      },
    ],
  };
}

export function validatingConfiguration(target: WebhookTarget): V1ValidatingWebhookConfiguration {
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name: target.name },
    webhooks: [
      {
        name: `runs.${group}`,
        clientConfig: clientConfig(target, webhookPaths.validateRun),
        ...common(target),
        rules: [runRule(["CREATE", "UPDATE"], resources.runs)],
      },
      {
        name: `approvals.${group}`,
        clientConfig: clientConfig(target, webhookPaths.validateApproval),
        ...common(target),
        rules: [runRule(["CREATE", "UPDATE"], resources.approvals)],
      },
      {
        name: `heldcommands.${group}`,
        clientConfig: clientConfig(target, webhookPaths.validateHeldCommand),
        ...common(target),
        rules: [
          runRule(["CREATE", "UPDATE"], resources.heldCommands),
          runRule(["UPDATE"], `${resources.heldCommands}/status`),
        ],
      },
      {
        // A grant may name only what the platform offers the policy's namespace.
        name: `accesspolicies.${group}`,
        clientConfig: clientConfig(target, webhookPaths.validatePolicy),
        ...common(target),
        rules: [runRule(["CREATE", "UPDATE"], resources.policies)],
      },
      {
        name: `status.runs.${group}`,
        clientConfig: clientConfig(target, webhookPaths.validateRunStatus),
        ...common(target),
        rules: [runRule(["UPDATE"], `${resources.runs}/status`)],
      },
      {
        // A debugging container in a run's pod could read the sidecar's memory or token.
        name: `ephemeral-containers.${group}`,
        clientConfig: clientConfig(target, webhookPaths.validateEphemeralContainers),
        ...common(target),
        objectSelector: { matchExpressions: [{ key: labels.run, operator: "Exists" }] },
        rules: [ephemeralContainersRule],
      },
      {
        // An exec or attach into the sidecar would read its memory and credential. Only
        // requests naming its container are sent, so an outage refuses no other exec.
        name: `sidecar-exec.${group}`,
        clientConfig: clientConfig(target, webhookPaths.validatePodConnect),
        ...common(target),
        matchConditions: [
          {
            name: "names-the-sidecar",
            expression: `has(object.container) && object.container == '${sidecarContainerName}'`,
          },
        ],
        rules: [connectRule(["pods/exec", "pods/attach"])],
      },
      {
        // A port-forward reaches the sidecar's listeners, which act with the run's access. A
        // CONNECT carries no pod labels and, over SPDY, not even its ports: every one is sent.
        name: `pod-port-forward.${group}`,
        clientConfig: clientConfig(target, webhookPaths.validatePodConnect),
        ...common(target),
        rules: [connectRule(["pods/portforward"])],
      },
      ...(target.injectPods
        ? [
            {
              // The same for a tagged pod, whose sidecar holds the same credential.
              name: `tagged-ephemeral-containers.${group}`,
              clientConfig: clientConfig(target, webhookPaths.validateEphemeralContainers),
              ...common(target),
              objectSelector: { matchLabels: { [labels.inject]: "true" } },
              rules: [ephemeralContainersRule],
            },
          ]
        : []),
    ],
  };
}

const ephemeralContainersRule = {
  apiGroups: [""],
  apiVersions: ["v1"],
  operations: ["UPDATE"],
  resources: ["pods/ephemeralcontainers"],
  scope: "Namespaced",
};

const connectRule = (subresources: string[]) => ({
  apiGroups: [""],
  apiVersions: ["v1"],
  operations: ["CONNECT"],
  resources: subresources,
  scope: "Namespaced",
});
