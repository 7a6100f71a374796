// The revocation hook the run lifecycle calls when a run ends or is deleted. Until run
// credentials are issued (dynamic roles, run tokens) there is nothing to revoke.
import type { LangGraphRun } from "../../../api/v1alpha1.ts";

export interface RunRevoker {
  /** Makes every credential the run held stop working. Idempotent; throws to be retried. */
  revoke(run: LangGraphRun): Promise<void>;
}

export const nothingIssuedYet: RunRevoker = {
  async revoke() {},
};
