// Lease-based leader election with client-go's semantics (k8s.io/client-go/tools/leaderelection):
// a lease counts as expired leaseDuration after this replica last saw it change, by its own
// clock; writes carry the resourceVersion read, so of two racing candidates one gets a 409.
import { setTimeout as sleep } from "node:timers/promises";
import {
  type ConfigurationOptions,
  CoordinationV1Api,
  IsomorphicFetchHttpLibrary,
  type KubeConfig,
  type V1Lease,
  V1MicroTime,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { statusOf } from "./api-errors.ts";

export interface LeaderElectorOptions {
  kc: KubeConfig;
  namespace: string;
  /** Name of the coordination.k8s.io/v1 Lease. */
  name: string;
  /** Unique per replica, e.g. the pod name. */
  identity: string;
  leaseDurationMs?: number;
  /** The leader steps down when it has not renewed for this long; less than leaseDurationMs. */
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  logger: Logger;
  /** The signal aborts when leadership ends; work started here must stop then. */
  onStartedLeading: (signal: AbortSignal) => void;
  onStoppedLeading: () => void;
}

type Attempt = "acquired" | "held-by-other" | "failed";

const fetchLibrary = new IsomorphicFetchHttpLibrary();

/** Per-call API options under which every request of the call together ends after timeoutMs. */
function withTimeout(timeoutMs: number): ConfigurationOptions {
  const signal = AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)));
  return {
    httpApi: {
      send(request) {
        request.setSignal(signal);
        return fetchLibrary.send(request);
      },
    },
  };
}

export class LeaderElector {
  readonly #api: CoordinationV1Api;
  readonly #namespace: string;
  readonly #name: string;
  readonly #identity: string;
  readonly #leaseDurationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #log: Logger;
  readonly #onStartedLeading: (signal: AbortSignal) => void;
  readonly #onStoppedLeading: () => void;

  readonly #stopping = new AbortController();
  #loop: Promise<void> | undefined;
  #leading: AbortController | undefined;
  /** The lease as last read or written, and when (local monotonic clock) it last changed. */
  #observed: V1Lease | undefined;
  #observedAt = 0;
  /** When the last successful acquire or renew was sent. */
  #renewedAt = 0;

  constructor(options: LeaderElectorOptions) {
    this.#api = options.kc.makeApiClient(CoordinationV1Api);
    this.#namespace = options.namespace;
    this.#name = options.name;
    this.#identity = options.identity;
    this.#leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.#renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.#retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.#log = options.logger.child({
      lease: `${options.namespace}/${options.name}`,
      identity: options.identity,
    });
    this.#onStartedLeading = options.onStartedLeading;
    this.#onStoppedLeading = options.onStoppedLeading;
    if (!options.identity) throw new Error("leader election needs a non-empty identity");
    if (!(this.#leaseDurationMs > this.#renewDeadlineMs)) {
      throw new Error("leaseDurationMs must be greater than renewDeadlineMs");
    }
    if (!(this.#renewDeadlineMs > this.#retryPeriodMs && this.#retryPeriodMs > 0)) {
      throw new Error("renewDeadlineMs must be greater than retryPeriodMs, which must be positive");
    }
  }

  get isLeader(): boolean {
    return this.#leading !== undefined;
  }

  /** Campaigns in the background until stop(); after losing leadership it campaigns again. */
  start(): void {
    if (this.#loop !== undefined) throw new Error("leader elector is already started");
    if (this.#stopping.signal.aborted) throw new Error("leader elector was stopped");
    this.#loop = this.#run().catch((error: unknown) => {
      this.#log.error({ err: error }, "leader election loop failed");
      this.#stepDown("leader election loop failed");
    });
  }

  /** Steps down if leading and releases the lease so another replica can take over at once. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#loop;
    if (this.#observed?.spec?.holderIdentity !== this.#identity) return;
    const lease = this.#observed;
    const now = new V1MicroTime();
    const body: V1Lease = {
      ...lease,
      spec: {
        ...lease.spec,
        holderIdentity: "",
        leaseDurationSeconds: 1,
        acquireTime: now,
        renewTime: now,
      },
    };
    try {
      this.#observed = await this.#api.replaceNamespacedLease(
        { name: this.#name, namespace: this.#namespace, body },
        withTimeout(this.#renewDeadlineMs),
      );
      this.#log.info("released the lease");
    } catch (error) {
      this.#log.warn({ err: error }, "could not release the lease; it expires on its own");
    }
  }

  async #run(): Promise<void> {
    while (await this.#acquire()) {
      const leading = new AbortController();
      this.#leading = leading;
      this.#log.info("started leading");
      try {
        this.#onStartedLeading(leading.signal);
      } catch (error) {
        this.#log.error({ err: error }, "onStartedLeading threw");
      }
      this.#stepDown(await this.#renewUntilLost());
    }
  }

  /** Retries every retryPeriod (jittered) until the lease is ours; false once stopping. */
  async #acquire(): Promise<boolean> {
    while (!this.#stopping.signal.aborted) {
      const startedAt = performance.now();
      const attempt = await this.#tryAcquireOrRenew(this.#renewDeadlineMs);
      if (attempt === "acquired" && !this.#stopping.signal.aborted) {
        this.#renewedAt = startedAt;
        return true;
      }
      // client-go's wait.JitterUntil with factor 1.2: retryPeriod to 2.2 × retryPeriod.
      if (!(await this.#pause(this.#retryPeriodMs * (1 + 1.2 * Math.random())))) return false;
    }
    return false;
  }

  /** Renews every retryPeriod; returns why leadership ended. */
  async #renewUntilLost(): Promise<string> {
    for (;;) {
      if (!(await this.#pause(this.#retryPeriodMs))) return "stopping";
      for (;;) {
        const remainingMs = this.#renewedAt + this.#renewDeadlineMs - performance.now();
        if (remainingMs <= 0) {
          return `could not renew the lease within ${this.#renewDeadlineMs} ms`;
        }
        const startedAt = performance.now();
        const attempt = await this.#tryAcquireOrRenew(remainingMs);
        if (attempt === "acquired") {
          this.#renewedAt = startedAt;
          break;
        }
        if (attempt === "held-by-other") {
          return `the lease is held by ${this.#observed?.spec?.holderIdentity}`;
        }
        if (!(await this.#pause(Math.min(this.#retryPeriodMs, remainingMs)))) return "stopping";
      }
    }
  }

  /** One read and, when the lease is free, expired or ours, one write, all within timeoutMs. */
  async #tryAcquireOrRenew(timeoutMs: number): Promise<Attempt> {
    const name = this.#name;
    const namespace = this.#namespace;
    const options = withTimeout(timeoutMs);
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name, namespace }, options);
    } catch (error) {
      if (statusOf(error) !== 404) return this.#failed("read", error);
      try {
        const body: V1Lease = { metadata: { name, namespace }, spec: this.#claim(undefined) };
        this.#observe(await this.#api.createNamespacedLease({ namespace, body }, options));
        return "acquired";
      } catch (error) {
        return this.#failed("create", error);
      }
    }

    this.#observe(lease);
    const holder = lease.spec?.holderIdentity ?? "";
    const durationMs = (lease.spec?.leaseDurationSeconds ?? 0) * 1_000;
    if (holder !== "" && holder !== this.#identity) {
      if (this.#observedAt + durationMs > performance.now()) return "held-by-other";
      this.#log.info({ previousHolder: holder }, "the lease expired; taking it over");
    }
    try {
      const body: V1Lease = { ...lease, spec: this.#claim(lease) };
      this.#observe(await this.#api.replaceNamespacedLease({ name, namespace, body }, options));
      return "acquired";
    } catch (error) {
      return this.#failed("update", error);
    }
  }

  /** The lease spec that makes this replica the holder, as of now. */
  #claim(current: V1Lease | undefined): V1Lease["spec"] {
    const spec = current?.spec ?? {};
    const now = new V1MicroTime();
    const renewing = spec.holderIdentity === this.#identity;
    return {
      ...spec,
      holderIdentity: this.#identity,
      leaseDurationSeconds: Math.max(1, Math.ceil(this.#leaseDurationMs / 1_000)),
      renewTime: now,
      acquireTime: renewing ? spec.acquireTime : now,
      leaseTransitions: (spec.leaseTransitions ?? 0) + (renewing || current === undefined ? 0 : 1),
    };
  }

  #observe(lease: V1Lease): void {
    const version = lease.metadata?.resourceVersion;
    if (version !== undefined && version === this.#observed?.metadata?.resourceVersion) return;
    const previousHolder = this.#observed?.spec?.holderIdentity;
    this.#observed = lease;
    this.#observedAt = performance.now();
    const holder = lease.spec?.holderIdentity;
    if (holder !== previousHolder) this.#log.debug({ holder }, "the lease changed hands");
  }

  #failed(action: string, error: unknown): Attempt {
    // A conflict means another replica wrote first: an expected outcome, not a fault.
    if (statusOf(error) === 409) {
      this.#log.debug(`${action} of the lease lost a race with another replica`);
    } else {
      this.#log.warn({ err: error }, `${action} of the lease failed`);
    }
    return "failed";
  }

  #stepDown(reason: string): void {
    const leading = this.#leading;
    if (leading === undefined) return;
    this.#leading = undefined;
    this.#log.info({ reason }, "stopped leading");
    leading.abort(new Error(`leadership ended: ${reason}`));
    try {
      this.#onStoppedLeading();
    } catch (error) {
      this.#log.error({ err: error }, "onStoppedLeading threw");
    }
  }

  /** Waits ms; false when stop() interrupted the wait. */
  async #pause(ms: number): Promise<boolean> {
    try {
      await sleep(ms, undefined, { signal: this.#stopping.signal });
      return true;
    } catch {
      return false;
    }
  }
}
