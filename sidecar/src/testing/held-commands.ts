// The operator's side of held commands as a test controls it: each hold is recorded with its
// abort signal and waits until the test decides it (the routes themselves are tested in the
// operator).
import type { HoldRequest } from "../../../api/credentials.ts";
import type { CommandHolds, HoldDecision } from "../credentials/command-holds.ts";

export interface Held {
  request: HoldRequest;
  signal: AbortSignal;
  decide(phase: HoldDecision["phase"], message: string): void;
}

/** Holds named RUN-1, RUN-2… in the order asked, listed in `held`. */
export function testHolds(run: string): { held: Held[]; holds: Pick<CommandHolds, "decide"> } {
  const held: Held[] = [];
  const holds = {
    decide: (request: HoldRequest, signal: AbortSignal) =>
      new Promise<HoldDecision>((resolve, reject) => {
        const name = `${run}-${held.length + 1}`;
        signal.addEventListener("abort", () => reject(signal.reason));
        held.push({
          request,
          signal,
          decide: (phase, message) => resolve({ name, phase, message, expiresAt: "" }),
        });
      }),
  };
  return { held, holds };
}
