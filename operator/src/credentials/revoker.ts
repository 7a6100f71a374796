// Revocation: what makes a run's credentials stop working when it ends. The run token needs
// nothing here (every replica refuses it once the run's status says revoked); dynamic roles are
// dropped with their sessions (credential-sweeper.ts catches what a crash left behind).
import type { AnyConnection, LangGraphRun } from "../../../api/v1alpha1.ts";
import type { RunRevoker } from "../runs/run-lifecycle.ts";
import type { UpstreamCredentials } from "./upstream-credentials.ts";

export class CredentialRevoker implements RunRevoker {
  readonly #upstream: UpstreamCredentials;

  constructor(upstream: UpstreamCredentials) {
    this.#upstream = upstream;
  }

  async revoke(run: LangGraphRun, connections: AnyConnection[]): Promise<void> {
    await Promise.all(connections.map((connection) => this.#upstream.revoke(run, connection)));
    await this.#upstream.forgetTokens(run);
  }
}
