// What a run makes in its namespace besides itself: its Job and its NetworkPolicy. The
// reconciler writes them through this interface; tests keep them in memory.
import type {
  BatchV1Api,
  CoreV1Api,
  NetworkingV1Api,
  V1Job,
  V1NetworkPolicy,
} from "@kubernetes/client-node";
import { unlessNotFound } from "../kube/api-errors.ts";
import { patchAs } from "../kube/meta.ts";

export interface RunWorkloads {
  /** The Job from the API server, when the cache has not seen it (yet). */
  readJob(namespace: string, name: string): Promise<V1Job | undefined>;
  /** Creates the Job; one that exists already fails with 409. */
  createJob(namespace: string, job: V1Job): Promise<V1Job>;
  /** Deletes the Job and, in the background, its pods; a Job already gone is fine. */
  deleteJob(namespace: string, name: string): Promise<void>;
  /** Makes the NetworkPolicy what is given (server-side apply, forced). */
  applyNetworkPolicy(namespace: string, policy: V1NetworkPolicy): Promise<void>;
  deleteNetworkPolicy(namespace: string, name: string): Promise<void>;
  /** Adds the run's labels to a tagged pod (a merge patch; precondition: the pod's uid). */
  labelPod(
    namespace: string,
    name: string,
    uid: string,
    labels: Record<string, string>,
  ): Promise<void>;
}

export class KubeRunWorkloads implements RunWorkloads {
  readonly #batch: BatchV1Api;
  readonly #networking: NetworkingV1Api;
  readonly #core: CoreV1Api;
  readonly #fieldManager: string;

  constructor(
    batch: BatchV1Api,
    networking: NetworkingV1Api,
    core: CoreV1Api,
    fieldManager: string,
  ) {
    this.#batch = batch;
    this.#networking = networking;
    this.#core = core;
    this.#fieldManager = fieldManager;
  }

  async labelPod(
    namespace: string,
    name: string,
    uid: string,
    labels: Record<string, string>,
  ): Promise<void> {
    await this.#core.patchNamespacedPod(
      { namespace, name, body: { metadata: { uid, labels } } },
      patchAs.merge,
    );
  }

  readJob(namespace: string, name: string): Promise<V1Job | undefined> {
    return unlessNotFound(this.#batch.readNamespacedJob({ namespace, name }));
  }

  createJob(namespace: string, job: V1Job): Promise<V1Job> {
    return this.#batch.createNamespacedJob({
      namespace,
      body: job,
      fieldManager: this.#fieldManager,
    });
  }

  async deleteJob(namespace: string, name: string): Promise<void> {
    await unlessNotFound(
      this.#batch.deleteNamespacedJob({ namespace, name, propagationPolicy: "Background" }),
    );
  }

  async applyNetworkPolicy(namespace: string, policy: V1NetworkPolicy): Promise<void> {
    await this.#networking.patchNamespacedNetworkPolicy(
      {
        namespace,
        name: policy.metadata?.name ?? "",
        body: policy,
        fieldManager: this.#fieldManager,
        force: true,
      },
      patchAs.apply,
    );
  }

  async deleteNetworkPolicy(namespace: string, name: string): Promise<void> {
    await unlessNotFound(this.#networking.deleteNamespacedNetworkPolicy({ namespace, name }));
  }
}
