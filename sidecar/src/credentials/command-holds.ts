// Holds one command for a human decision: asks the operator (with the run JWT held now) to
// record it as a HeldCommand, then long-polls its decision. The command waits meanwhile; the
// caller forwards it, exactly as held, only on Approved.
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { backoffDelay } from "../../../api/backoff.ts";
import {
  type HoldRequest,
  type HoldState,
  maxStatusWaitSeconds,
} from "../../../api/credentials.ts";
import { errorMessage } from "../../../api/errors.ts";
import type { ApprovalRecord } from "../../../api/session-events.ts";
import { type OperatorClient, OperatorRequestError } from "./operator-client.ts";

const phases: ReadonlySet<string> = new Set(["Pending", "Approved", "Denied", "Expired"]);

export interface CommandHoldsOptions {
  operator: Pick<OperatorClient, "hold" | "holdState">;
  /** The run JWT held now; undefined once the credential is gone. */
  token: () => string | undefined;
  logger: Logger;
  pollSeconds?: number;
}

/** Why a hold could not be decided: the run's credential is gone, or the operator refused it. */
export class HoldFailed extends Error {
  override name = "HoldFailed";
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** A held command's final state: it went, or it never will. */
export type HoldDecision = HoldState & { phase: ApprovalRecord["decision"] };

/** What approvers see of what a held command carries: its digest and size. */
export function bodyDigest(bytes: Buffer): NonNullable<HoldRequest["body"]> {
  return { sha256: createHash("sha256").update(bytes).digest("hex"), bytes: bytes.length };
}

/** What a session event says of the decision. */
export function approvalRecord(state: HoldDecision): ApprovalRecord {
  return { command: state.name, decision: state.phase, message: state.message };
}

export class CommandHolds {
  readonly #o: CommandHoldsOptions;

  constructor(options: CommandHoldsOptions) {
    this.#o = options;
  }

  /**
   * Opens the held command and waits for its decision: the final HoldState (Approved, Denied
   * or Expired). Throws HoldFailed when it cannot be held; an aborted signal ends the wait.
   */
  async decide(
    request: HoldRequest,
    signal: AbortSignal,
    onHeld?: (state: HoldState) => void,
  ): Promise<HoldDecision> {
    let state = await this.#retrying(signal, (token) =>
      this.#o.operator.hold(token, request, signal),
    );
    onHeld?.(state);
    this.#o.logger.info(
      { command: state.name, connection: request.connection, action: request.action },
      "command held for approval",
    );
    const wait = Math.min(this.#o.pollSeconds ?? maxStatusWaitSeconds, maxStatusWaitSeconds);
    while (state.phase === "Pending") {
      const name = state.name;
      state = await this.#retrying(signal, (token) =>
        this.#o.operator.holdState(token, name, wait, signal),
      );
    }
    return state as HoldDecision;
  }

  /** Calls the operator until it answers a HoldState; a refusal ends it, an outage is retried. */
  async #retrying(
    signal: AbortSignal,
    call: (token: string) => Promise<unknown>,
  ): Promise<HoldState> {
    for (let attempt = 0; ; attempt++) {
      signal.throwIfAborted();
      const token = this.#o.token();
      if (!token)
        throw new HoldFailed(
          "CredentialUnavailable",
          "the sidecar holds no credential for this run",
        );
      try {
        return holdState(await call(token));
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        if (error instanceof OperatorRequestError && error.kind === "refused") {
          throw new HoldFailed(error.reason ?? "Refused", error.message);
        }
        if (error instanceof HoldFailed) throw error;
        // The operator restarting or unreachable: the held command is an object, so ask again.
        const delay = backoffDelay(attempt, { initialMs: 500, maxMs: 10_000 });
        this.#o.logger.warn(
          { err: errorMessage(error), retryInMs: Math.round(delay) },
          "asking about a held command failed",
        );
        await sleep(delay, undefined, { signal });
      }
    }
  }
}

function holdState(value: unknown): HoldState {
  const state = value as Partial<HoldState> | undefined;
  if (
    typeof state?.name !== "string" ||
    typeof state.phase !== "string" ||
    !phases.has(state.phase) ||
    typeof state.message !== "string"
  ) {
    throw new HoldFailed("Malformed", "the operator's answer is not a HoldState");
  }
  return state as HoldState;
}
