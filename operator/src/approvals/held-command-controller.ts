// Keeps each HeldCommand's status (what kubectl and the approvers' listing show) in step with
// its decision as counted from the cache, and says each step on the run as an Event. The
// sidecar never reads this status: its long-poll counts the decision itself.
import { isDeepStrictEqual } from "node:util";
import type { Logger } from "pino";
import {
  annotations,
  type HeldCommand,
  type HeldCommandStatus,
  type LangGraphRun,
  typedRun,
} from "../../../api/v1alpha1.ts";
import type { ClusterObjects } from "../kube/cluster-cache.ts";
import { Controller, type ReconcileResult, type Reconciler } from "../kube/controller.ts";
import type { EventSink } from "../kube/events.ts";
import { objectKey } from "../kube/object-store.ts";
import type { ApprovalNotifier } from "../notifications/approval-notices.ts";
import { connectionsIn } from "../policy/namespace-connections.ts";
import { requesterOf } from "../runs/requester.ts";
import type { StatusSeal } from "../runs/status-seal.ts";
import { heldCommandView } from "./held-command-state.ts";
import type { HeldCommands } from "./held-commands.ts";

export interface HeldCommandDeps {
  cache: Pick<
    ClusterObjects,
    | "runs"
    | "heldCommands"
    | "approvals"
    | "policies"
    | "connections"
    | "clusterConnections"
    | "namespaces"
  >;
  store: HeldCommands;
  events: EventSink;
  /** Tells the webhook of the policy holding a command that it waits, and how it ended. */
  notifier: ApprovalNotifier;
  seal: StatusSeal;
  now?: () => number;
}

export class HeldCommandReconciler implements Reconciler {
  readonly #deps: HeldCommandDeps;

  constructor(deps: HeldCommandDeps) {
    this.#deps = deps;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { cache, store } = this.#deps;
    const [namespace = "", name = ""] = key.split("/");
    const command = cache.heldCommands.get(namespace, name);
    if (!command) return;
    const now = this.#deps.now?.() ?? Date.now();
    // A run that took the name of the command's run is another run: nothing is said on it.
    const named = cache.runs.get(namespace, command.spec.run);
    const runUid = command.metadata?.annotations?.[annotations.runUid];
    const run = named?.metadata?.uid === runUid ? named : undefined;
    const view = heldCommandView({
      command,
      run,
      policies: cache.policies.list(namespace),
      connections: connectionsIn(cache, namespace),
      approvals: cache.approvals.list(namespace),
      seal: this.#deps.seal,
      nowMs: now,
    });
    const status: HeldCommandStatus = {
      phase: view.state.phase,
      message: view.state.message,
      expiresAt: view.state.expiresAt.replace(/\.\d{3}Z$/, "Z"),
      ...(view.rule
        ? {
            policy: view.rule.policy,
            approvers: view.rule.approvers,
            approvals: view.rule.approvals,
          }
        : {}),
      decisions: view.decisions,
    };
    // A decided command stays decided: a later change (the run's end) does not rewrite it.
    const decided = command.status?.phase && command.status.phase !== "Pending";
    if (!decided && !isDeepStrictEqual(status, command.status)) {
      await store.writeStatus(command, status);
      if (status.phase !== command.status?.phase) await this.#announce(command, run, status);
    }
    if (status.phase !== "Pending") return;
    return { requeueAfterMs: Math.max(0, Date.parse(view.state.expiresAt) - now) + 10 };
  }

  /** Says the command's new phase as an Event on its run and to its policy's webhook. */
  async #announce(
    command: HeldCommand,
    run: LangGraphRun | undefined,
    status: HeldCommandStatus,
  ): Promise<void> {
    const name = command.metadata?.name ?? "";
    const held = `${command.spec.connection}: ${command.spec.summary} (HeldCommand ${name})`;
    if (run) {
      const [type, reason, note] =
        status.phase === "Pending"
          ? (["Normal", "CommandHeld", `held for approval: ${held}`] as const)
          : status.phase === "Approved"
            ? (["Normal", "CommandApproved", `${held} ${status.message}`] as const)
            : (["Warning", `Command${status.phase}`, `${held}: ${status.message}`] as const);
      await this.#deps.events.record(typedRun(run), type, reason, "Approve", note);
    }
    // A command denied because its grant is gone is told to the policy that held it.
    const policy = status.policy ?? command.status?.policy;
    this.#deps.notifier.notify(policy ? [policy] : [], {
      state: status.phase === "Pending" ? "Waiting" : (status.phase ?? "Denied"),
      namespace: command.metadata?.namespace ?? "",
      kind: "HeldCommand",
      name,
      run: command.spec.run,
      requester: (run && requesterOf(run)?.username) ?? "",
      request: `${command.spec.connection} (${command.spec.action}): ${command.spec.summary}`,
      message: status.message ?? "",
    });
  }
}

/** Re-counts a held command when it, an Approval of it, its run or a policy changes. */
export function heldCommandController(deps: HeldCommandDeps, logger: Logger): Controller {
  const { heldCommands, approvals, runs, policies } = deps.cache;
  const controller = new Controller({
    name: "held-commands",
    reconciler: new HeldCommandReconciler(deps),
    workers: 2,
    logger,
    allKeys: () => heldCommands.list().map(objectKey),
  });
  const enqueueRun = (namespace: string | undefined, run: string) => {
    for (const command of heldCommands.list(namespace)) {
      if (command.spec.run === run) controller.enqueue(objectKey(command));
    }
  };
  heldCommands.onChange((command) => controller.enqueue(objectKey(command)));
  approvals.onChange((approval) => {
    if (approval.spec.command)
      controller.enqueue(`${approval.metadata?.namespace}/${approval.spec.command}`);
  });
  runs.onChange((run) => enqueueRun(run.metadata?.namespace, run.metadata?.name ?? ""));
  policies.onChange((policy) => {
    for (const command of heldCommands.list(policy.metadata?.namespace)) {
      controller.enqueue(objectKey(command));
    }
  });
  return controller;
}
