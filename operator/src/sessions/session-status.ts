// Keeps each run's status.session counts in step with the store: after an ingest, the run's
// summary is read back and written at most once per interval per run. Every replica may write
// it; the counts come from the shared store, so whichever write lands last is right.
import type { CustomObjectsApi } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { group, resources, version } from "../../../api/v1alpha1.ts";
import { patchAs } from "../kube/meta.ts";
import type { SessionStore } from "./session-store.ts";

export interface SessionStatusOptions {
  store: SessionStore;
  custom: CustomObjectsApi;
  logger: Logger;
  intervalMs?: number;
}

export class SessionStatus {
  readonly #options: SessionStatusOptions;
  readonly #pending = new Map<string, { namespace: string; name: string }>();
  readonly #timers = new Map<string, NodeJS.Timeout>();

  constructor(options: SessionStatusOptions) {
    this.#options = options;
  }

  /** Schedules a status write for the run (at most one per interval). */
  ingested(run: { namespace: string; name: string; uid: string }): void {
    this.#pending.set(run.uid, run);
    if (this.#timers.has(run.uid)) return;
    const timer = setTimeout(() => void this.#write(run.uid), this.#options.intervalMs ?? 2_000);
    timer.unref();
    this.#timers.set(run.uid, timer);
  }

  stop(): void {
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }

  async #write(uid: string): Promise<void> {
    this.#timers.delete(uid);
    const run = this.#pending.get(uid);
    this.#pending.delete(uid);
    if (!run) return;
    try {
      const session = await this.#options.store.summary(uid);
      await this.#options.custom.patchNamespacedCustomObjectStatus(
        {
          group,
          version,
          namespace: run.namespace,
          plural: resources.runs,
          name: run.name,
          // The uid precondition: a run recreated under the same name keeps its own counts.
          body: { metadata: { uid }, status: { session } },
        },
        patchAs.merge,
      );
    } catch (error) {
      this.#options.logger.debug(
        { err: error, run: `${run.namespace}/${run.name}` },
        "session counts not written",
      );
    }
  }
}
