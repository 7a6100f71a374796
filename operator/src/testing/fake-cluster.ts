// An in-memory stand-in for the API server behind the operator's narrow interfaces: caches that
// see every write at once (as a watch would), a status writer with resourceVersion conflicts,
// finalizers, the run's Job and NetworkPolicy, and recorded Events. Lifecycle and issuance
// tests drive the real reconcilers against it in milliseconds; e2e proves the real wiring.
import {
  ApiException,
  type KubernetesObject,
  type V1Job,
  type V1Namespace,
  type V1NetworkPolicy,
  type V1Pod,
  type V1RoleBinding,
} from "@kubernetes/client-node";
import type { ApprovalRecord } from "../../../api/session-events.ts";
import type {
  AccessPolicy,
  Approval,
  ClusterConnection,
  Connection,
  HeldCommand,
  LangGraphRun,
  LangGraphRunStatus,
} from "../../../api/v1alpha1.ts";
import type { WatchedCache } from "../kube/cache.ts";
import type { ClusterObjects } from "../kube/cluster-cache.ts";
import type { EventSink, EventType } from "../kube/events.ts";
import type { Finalizers } from "../kube/finalizers.ts";
import { ObjectStore } from "../kube/object-store.ts";
import type { ApprovalNotice, ApprovalNotifier } from "../notifications/approval-notices.ts";
import type { RunSessionLog } from "../runs/run-lifecycle.ts";
import type { RunRef, RunStatusWriter } from "../runs/run-status-writer.ts";
import type { RunWorkloads } from "../runs/run-workloads.ts";

export function apiError(code: number, message: string): ApiException<string> {
  return new ApiException(code, message, JSON.stringify({ message }), {});
}

export class MemoryCache<T extends KubernetesObject> implements WatchedCache<T> {
  readonly #store = new ObjectStore<T>();
  readonly #handlers: ((obj: T) => void)[] = [];
  #version = 0;

  get(namespace: string, name: string): T | undefined {
    return this.#store.get(namespace ? `${namespace}/${name}` : name);
  }

  list(namespace?: string): T[] {
    return this.#store.list(namespace);
  }

  onChange(handler: (obj: T) => void): void {
    this.#handlers.push(handler);
  }

  /** Stores a copy with the next resourceVersion, as the API server would, and tells watchers. */
  put(obj: T): T {
    const stored = structuredClone(obj);
    stored.metadata = { ...stored.metadata, resourceVersion: String(++this.#version) };
    this.#store.set(stored);
    for (const handler of this.#handlers) handler(stored);
    return stored;
  }

  remove(obj: T): void {
    if (this.#store.delete(obj)) for (const handler of this.#handlers) handler(obj);
  }
}

export interface RecordedEvent {
  kind: string | undefined;
  name: string | undefined;
  type: EventType;
  reason: string;
  note: string;
}

/** One fake cluster: what the reconcilers read and every write they make. */
export class FakeCluster implements ClusterObjects {
  readonly runs = new MemoryCache<LangGraphRun>();
  readonly policies = new MemoryCache<AccessPolicy>();
  readonly connections = new MemoryCache<Connection>();
  readonly clusterConnections = new MemoryCache<ClusterConnection>();
  readonly namespaces = new MemoryCache<V1Namespace>();
  readonly roleBindings = new MemoryCache<V1RoleBinding>();
  readonly approvals = new MemoryCache<Approval>();
  readonly heldCommands = new MemoryCache<HeldCommand>();
  readonly jobs = new MemoryCache<V1Job>();
  readonly pods = new MemoryCache<V1Pod>();
  readonly networkPolicies = new MemoryCache<V1NetworkPolicy>();
  readonly taggedPods = new MemoryCache<V1Pod>();
  readonly events: RecordedEvent[] = [];
  /** Every approval notice sent, with the policies it was sent for. */
  readonly notices: { policies: readonly string[]; notice: ApprovalNotice }[] = [];
  readonly notifier: ApprovalNotifier = {
    notify: (policies, notice) => {
      this.notices.push({ policies, notice });
    },
  };
  /** Every run approval decision recorded into a session. */
  readonly sessionApprovals: { run: string; approval: ApprovalRecord }[] = [];
  readonly sessions: RunSessionLog = {
    recordApproval: async (run, approval) => {
      this.sessionApprovals.push({ run: run.metadata?.uid ?? "", approval });
    },
  };
  /** Every status written, in order. */
  readonly statusWrites: LangGraphRunStatus[] = [];
  /** Calls to fail once with this API error, by method name ("createJob", "write", ...). */
  readonly failNext = new Map<string, ApiException<string>>();

  #fail(method: string): void {
    const error = this.failNext.get(method);
    if (!error) return;
    this.failNext.delete(method);
    throw error;
  }

  readonly status: RunStatusWriter = {
    write: async (run, status) => {
      this.#fail("write");
      const current = this.#current(run);
      if (current.metadata?.resourceVersion !== run.metadata?.resourceVersion) {
        throw apiError(409, "the object has been modified");
      }
      this.statusWrites.push(structuredClone(status));
      return this.runs.put({ ...current, status });
    },
    read: async (namespace, name) => this.runs.get(namespace, name),
    writeSession: async (ref: RunRef, session) => {
      const current = this.runs.get(ref.namespace, ref.name);
      if (current?.metadata?.uid !== ref.uid) throw apiError(409, "uid precondition failed");
      this.runs.put({ ...current, status: { ...current.status, session } });
    },
  };

  readonly finalizers: Finalizers = {
    add: async (plural, obj, finalizer) => {
      this.#fail("addFinalizer");
      const cache = this.#cacheOf(plural);
      const current = cache.get(obj.metadata?.namespace ?? "", obj.metadata?.name ?? "");
      if (!current) throw apiError(404, "not found");
      if (current.metadata?.resourceVersion !== obj.metadata?.resourceVersion) {
        throw apiError(409, "the object has been modified");
      }
      const finalizers = current.metadata?.finalizers ?? [];
      if (!finalizers.includes(finalizer)) {
        cache.put({
          ...current,
          metadata: { ...current.metadata, finalizers: [...finalizers, finalizer] },
        });
      }
    },
    remove: async (plural, obj, finalizer) => {
      const cache = this.#cacheOf(plural);
      const current = cache.get(obj.metadata?.namespace ?? "", obj.metadata?.name ?? "");
      if (!current?.metadata?.finalizers?.includes(finalizer)) return;
      const finalizers = current.metadata.finalizers.filter((f) => f !== finalizer);
      // The API server removes a deleting object once its last finalizer goes.
      if (current.metadata?.deletionTimestamp && finalizers.length === 0) cache.remove(current);
      else cache.put({ ...current, metadata: { ...current.metadata, finalizers } });
    },
  };

  readonly workloads: RunWorkloads = {
    readJob: async (namespace, name) => this.jobs.get(namespace, name),
    createJob: async (namespace, job) => {
      this.#fail("createJob");
      if (this.jobs.get(namespace, job.metadata?.name ?? "")) throw apiError(409, "exists");
      return this.jobs.put({
        ...job,
        metadata: { ...job.metadata, namespace, uid: `job-uid-${job.metadata?.name}` },
      });
    },
    deleteJob: async (namespace, name) => {
      const job = this.jobs.get(namespace, name);
      if (job) this.jobs.remove(job);
    },
    applyNetworkPolicy: async (namespace, policy) => {
      this.networkPolicies.put({ ...policy, metadata: { ...policy.metadata, namespace } });
    },
    deleteNetworkPolicy: async (namespace, name) => {
      const policy = this.networkPolicies.get(namespace, name);
      if (policy) this.networkPolicies.remove(policy);
    },
    labelPod: async (namespace, name, uid, labels) => {
      const pod = this.taggedPods.get(namespace, name);
      if (pod?.metadata?.uid !== uid) throw apiError(409, "uid precondition failed");
      this.taggedPods.put({
        ...pod,
        metadata: { ...pod.metadata, labels: { ...pod.metadata?.labels, ...labels } },
      });
    },
  };

  readonly eventSink: EventSink = {
    record: async (regarding, type, reason, _action, note) => {
      this.events.push({
        kind: regarding.kind,
        name: regarding.metadata?.name,
        type,
        reason,
        note,
      });
    },
  };

  /** Marks the object deleted, as kubectl delete does to an object with finalizers. */
  delete<T extends KubernetesObject>(cache: MemoryCache<T>, obj: T): void {
    const current = cache.get(obj.metadata?.namespace ?? "", obj.metadata?.name ?? "");
    if (!current) return;
    if (!current.metadata?.finalizers?.length) cache.remove(current);
    else
      cache.put({ ...current, metadata: { ...current.metadata, deletionTimestamp: new Date() } });
  }

  #current(run: LangGraphRun): LangGraphRun {
    const current = this.runs.get(run.metadata?.namespace ?? "", run.metadata?.name ?? "");
    if (!current) throw apiError(404, "not found");
    return current;
  }

  #cacheOf(plural: string): MemoryCache<KubernetesObject> {
    const caches: Record<string, MemoryCache<KubernetesObject>> = {
      langgraphruns: this.runs as unknown as MemoryCache<KubernetesObject>,
      connections: this.connections as unknown as MemoryCache<KubernetesObject>,
      clusterconnections: this.clusterConnections as unknown as MemoryCache<KubernetesObject>,
    };
    const cache = caches[plural];
    if (!cache) throw new Error(`the fake cluster keeps no finalizers on ${plural}`);
    return cache;
  }
}
