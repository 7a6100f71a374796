// The LangGraphRun lifecycle: Pending -> Denied | AwaitingApproval | Running -> Succeeded |
// Failed | Expired | Cancelled. Each reconcile converges one run from what the cache holds now,
// handing it to its phase's step.
import type { Logger } from "pino";
import { BoundedCache } from "../../../api/bounded-cache.ts";
import {
  finishedPhases,
  type LangGraphRun,
  RunPhase,
  resources,
  revokeFinalizer,
} from "../../../api/v1alpha1.ts";
import type { ReconcileResult, Reconciler } from "../kube/controller.ts";
import { awaitApproval } from "./awaiting-approval.ts";
import { finalize } from "./deleted-run.ts";
import { authorize } from "./pending-run.ts";
import { RunLifecycle, type RunLifecycleDeps } from "./run-lifecycle.ts";
import { track } from "./running-run.ts";

export class RunReconciler implements Reconciler {
  readonly #lifecycle: RunLifecycle;
  /** Runs in the operator's namespace already told why they never start. */
  readonly #ignored = new BoundedCache<string, true>({ maxEntries: 10_000 });

  constructor(deps: RunLifecycleDeps) {
    this.#lifecycle = new RunLifecycle(deps);
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { deps } = this.#lifecycle;
    const [namespace = "", name = ""] = key.split("/");
    const run = deps.cache.runs.get(namespace, name);
    if (!run) return;
    const log = deps.logger.child({ run: key });
    if (namespace === deps.operatorNamespace) return this.#ignoreInOperatorNamespace(run, log);
    if (run.metadata?.deletionTimestamp) return finalize(this.#lifecycle, run, log);
    if (!run.metadata?.finalizers?.includes(revokeFinalizer)) {
      // The change re-queues the run; nothing is started before revocation is guaranteed.
      await deps.finalizers.add(resources.runs, run, revokeFinalizer);
      return;
    }
    if (!deps.seal.statusIsTrusted(run)) {
      return this.#lifecycle.finish(
        run,
        RunPhase.Failed,
        "StatusNotSealed",
        `phase ${run.status?.phase} was not set by langgraph-jit (its seal does not match): the run is not trusted to hold a credential`,
        log,
      );
    }
    const phase = run.status?.phase ?? RunPhase.Pending;
    if (phase === RunPhase.Pending) return authorize(this.#lifecycle, run, log);
    if (phase === RunPhase.AwaitingApproval) return awaitApproval(this.#lifecycle, run, log);
    if (phase === RunPhase.Running) return track(this.#lifecycle, run, log);
    if (finishedPhases.has(phase)) return this.#lifecycle.ensureRevoked(run, log);
  }

  /** Says once per run why it never starts: no webhook stamped or checked it. */
  async #ignoreInOperatorNamespace(run: LangGraphRun, log: Logger): Promise<undefined> {
    const uid = run.metadata?.uid ?? "";
    if (this.#ignored.has(uid)) return;
    this.#ignored.set(uid, true);
    const message = `runs in langgraph-jit's own namespace ${this.#lifecycle.deps.operatorNamespace} are never started: its admission webhooks do not look there, so no requester is stamped`;
    log.warn(message);
    await this.#lifecycle.event(run, "Warning", "NotReconciled", "Authorize", message);
  }
}
