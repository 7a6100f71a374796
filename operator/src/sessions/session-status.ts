// Keeps each run's status.session counts in step with the store: after an ingest, the run's
// summary is read back and written at most once per interval per run. Every replica may write
// it; the counts come from the shared store, so whichever write lands last is right.
import type { Logger } from "pino";
import type { RunRef, RunStatusWriter } from "../runs/run-status-writer.ts";
import type { SessionStore } from "./session-store.ts";

export interface SessionStatusOptions {
  store: SessionStore;
  status: Pick<RunStatusWriter, "writeSession">;
  logger: Logger;
  intervalMs?: number;
}

export class SessionStatus {
  readonly #options: SessionStatusOptions;
  readonly #pending = new Map<string, RunRef>();
  readonly #timers = new Map<string, NodeJS.Timeout>();

  constructor(options: SessionStatusOptions) {
    this.#options = options;
  }

  /** Schedules a status write for the run (at most one per interval). */
  ingested(run: RunRef): void {
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
      await this.#options.status.writeSession(run, session);
    } catch (error) {
      this.#options.logger.debug(
        { err: error, run: `${run.namespace}/${run.name}` },
        "session counts not written",
      );
    }
  }
}
