// Acting as a run's sidecar against the real operator: the pod's TokenRequest-bound token, the
// credential API over verified TLS, and a correctly signed but expired service-account token.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { importPKCS8, SignJWT } from "jose";
import { Agent, fetch } from "undici";
import { credentialApi } from "../../api/credentials.ts";
import { clusterDir, eventually, kubeConfigFor } from "./cluster.ts";
import type { OperatorProcess } from "./operator.ts";

const core = kubeConfigFor("admin").makeApiClient(CoreV1Api);

/** The pod the Job controller made for a run (Pending: the test cluster has no node yet). */
export async function podOfRun(namespace: string, run: string): Promise<V1Pod> {
  return eventually(`a pod of run ${run}`, async () => {
    const pods = await core.listNamespacedPod({
      namespace,
      labelSelector: `langgraph-jit.dev/run=${run}`,
    });
    return pods.items.find((p) => !p.metadata?.deletionTimestamp);
  });
}

/** A service-account token bound to the pod, as the kubelet projects it into the sidecar. */
export async function podToken(pod: V1Pod, audience = "langgraph-jit"): Promise<string> {
  const answer = await core.createNamespacedServiceAccountToken({
    namespace: pod.metadata?.namespace ?? "",
    name: pod.spec?.serviceAccountName ?? "default",
    body: {
      spec: {
        audiences: [audience],
        expirationSeconds: 600,
        boundObjectRef: {
          apiVersion: "v1",
          kind: "Pod",
          name: pod.metadata?.name,
          uid: pod.metadata?.uid,
        },
      },
    },
  });
  return answer.status?.token ?? "";
}

/** A token signed with the cluster's real service-account key whose exp has passed. */
export async function expiredPodToken(pod: V1Pod): Promise<string> {
  const namespace = pod.metadata?.namespace ?? "";
  const account = pod.spec?.serviceAccountName ?? "default";
  const key = await importPKCS8(readFileSync(join(clusterDir, "pki", "sa.key"), "utf8"), "RS256");
  const serviceAccount = await core.readNamespacedServiceAccount({ namespace, name: account });
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    "kubernetes.io": {
      namespace,
      pod: { name: pod.metadata?.name, uid: pod.metadata?.uid },
      serviceaccount: { name: account, uid: serviceAccount.metadata?.uid },
    },
  })
    .setProtectedHeader({ alg: "RS256" })
    .setIssuer("https://kubernetes.default.svc.cluster.local")
    .setAudience(["langgraph-jit"])
    .setSubject(`system:serviceaccount:${namespace}:${account}`)
    .setIssuedAt(now - 1200)
    .setNotBefore(now - 1200)
    .setExpirationTime(now - 600)
    .sign(key);
}

export interface ApiAnswer<T = Record<string, unknown>> {
  status: number;
  body: T;
}

/** Calls the operator's credential API as a sidecar would. */
export class CredentialApiClient {
  readonly #operator: OperatorProcess;
  #agent: Agent | undefined;

  constructor(operator: OperatorProcess) {
    this.#operator = operator;
  }

  async #call<T>(
    path: string,
    init: { method: string; token?: string; body?: unknown },
  ): Promise<ApiAnswer<T>> {
    this.#agent ??= new Agent({ connect: { ca: await this.#operator.caPem() } });
    const headers: Record<string, string> = init.token
      ? { authorization: `Bearer ${init.token}` }
      : {};
    if (init.body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${this.#operator.url}${path}`, {
      method: init.method,
      dispatcher: this.#agent,
      headers,
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    return { status: response.status, body: (await response.json()) as T };
  }

  issue<T = Record<string, unknown>>(podToken: string): Promise<ApiAnswer<T>> {
    return this.#call(credentialApi.issue, { method: "POST", token: podToken });
  }

  status(runToken: string, waitSeconds = 0): Promise<ApiAnswer> {
    return this.#call(`${credentialApi.status}?waitSeconds=${waitSeconds}`, {
      method: "GET",
      token: runToken,
    });
  }

  postEvents(runToken: string | undefined, body: unknown): Promise<ApiAnswer> {
    return this.#call(credentialApi.events, { method: "POST", token: runToken, body });
  }

  jwks(): Promise<ApiAnswer> {
    return this.#call(credentialApi.jwks, { method: "GET" });
  }

  async close(): Promise<void> {
    await this.#agent?.close();
  }
}
