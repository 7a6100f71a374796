// The operator's own session event: how a run's approval was decided, stored at seq 0 (a
// sidecar's events start at 1, and no sidecar may send this kind), so that `kubectl jit logs`
// shows who let the run start, or who stopped it before it ever had a sidecar.
import type { Logger } from "pino";
import {
  type ApprovalRecord,
  runApprovalKind,
  sessionEventSchemaVersion,
} from "../../../api/session-events.ts";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import type { RunSessionLog } from "../runs/run-lifecycle.ts";
import type { SessionStatus } from "./session-status.ts";
import type { SessionStore } from "./session-store.ts";

export class StoredRunSessionLog implements RunSessionLog {
  readonly #store: SessionStore;
  readonly #status: SessionStatus;
  readonly #logger: Logger;

  constructor(store: SessionStore, status: SessionStatus, logger: Logger) {
    this.#store = store;
    this.#status = status;
    this.#logger = logger;
  }

  async recordApproval(run: LangGraphRun, approval: ApprovalRecord): Promise<void> {
    const ref = {
      namespace: run.metadata?.namespace ?? "",
      name: run.metadata?.name ?? "",
      uid: run.metadata?.uid ?? "",
    };
    try {
      await this.#store.ingest([
        {
          schema: sessionEventSchemaVersion,
          run: ref,
          seq: 0,
          time: new Date().toISOString(),
          kind: runApprovalKind,
          approval,
        },
      ]);
      this.#status.ingested(ref);
    } catch (error) {
      this.#logger.warn(
        { err: error, run: `${ref.namespace}/${ref.name}` },
        "the run's approval decision was not stored in its session",
      );
    }
  }
}
