// Deletion: an active run is Cancelled, its Job removed and its credentials revoked before the
// finalizer lets it go.
import type { Logger } from "pino";
import { type LangGraphRun, RunPhase, resources, revokeFinalizer } from "../../../api/v1alpha1.ts";
import { runObjectName } from "./names.ts";
import type { RunLifecycle } from "./run-lifecycle.ts";

export async function finalize(
  lifecycle: RunLifecycle,
  run: LangGraphRun,
  log: Logger,
): Promise<undefined> {
  if (!run.metadata?.finalizers?.includes(revokeFinalizer)) return;
  // Only a Running run has a Job; finishing it as Cancelled removes the Job and revokes.
  if (run.status?.phase === RunPhase.Running) {
    await lifecycle.finish(
      run,
      RunPhase.Cancelled,
      "Deleted",
      "the run was deleted while active",
      log,
    );
  } else {
    await lifecycle.ensureRevoked(run, log);
  }
  // The garbage collector would remove it too, but on its own schedule.
  await lifecycle.deps.workloads.deleteNetworkPolicy(
    run.metadata.namespace ?? "",
    runObjectName(run),
  );
  await lifecycle.deps.finalizers.remove(resources.runs, run, revokeFinalizer);
}
