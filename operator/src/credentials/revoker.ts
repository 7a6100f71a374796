// Revocation: what makes a run's credentials stop working when it ends. The run token needs
// nothing here (every replica refuses it once the run's status says revoked); dynamic roles are
// dropped with their sessions; a sweeper drops roles whose runs vanished during a crash.
import type { Logger } from "pino";
import {
  type Connection,
  finishedPhases,
  type LangGraphRun,
  RunPhase,
} from "../../../api/v1alpha1.ts";
import type { Cache } from "../kube/cache.ts";
import type { RunRevoker } from "../runs/run-reconciler.ts";
import type { MintedTokens } from "./minted-tokens.ts";
import { dropRunRole, listRunRoles } from "./postgres-roles.ts";
import type { UpstreamCredentials } from "./upstream-credentials.ts";

export class CredentialRevoker implements RunRevoker {
  readonly #upstream: UpstreamCredentials;

  constructor(upstream: UpstreamCredentials) {
    this.#upstream = upstream;
  }

  async revoke(run: LangGraphRun, connections: Connection[]): Promise<void> {
    await Promise.all(connections.map((connection) => this.#upstream.revoke(run, connection)));
    await this.#upstream.forgetTokens(run);
  }
}

/**
 * Ends what a crash between a run's end and its revocation left behind: dynamic roles and
 * OAuth 2.0 tokens whose runs are gone or no longer hold a credential.
 */
export async function sweepOrphans(options: {
  connections: Cache<Connection>;
  runs: Cache<LangGraphRun>;
  upstream: UpstreamCredentials;
  tokens: MintedTokens;
  logger: Logger;
}): Promise<void> {
  const { runs, upstream, logger } = options;
  // Only an ended run's credentials go: a cache that lags another replica's issuance must not
  // take a live run's role.
  const live = (owner: { namespace: string; name: string; uid: string }) => {
    const run = runs.get(owner.namespace, owner.name);
    return (
      run !== undefined &&
      run.metadata?.uid === owner.uid &&
      !run.status?.credential?.revokedAt &&
      !finishedPhases.has(run.status?.phase ?? RunPhase.Pending)
    );
  };
  for (const connection of options.connections.list()) {
    const namespace = connection.metadata?.namespace ?? "";
    const name = connection.metadata?.name ?? "";
    try {
      const admin = await upstream.postgresAdmin(connection);
      if (!admin) continue;
      for (const role of await listRunRoles(admin)) {
        const owner = role.comment;
        if (owner?.run.namespace !== namespace || owner.connection !== name) continue;
        if (live(owner.run)) continue;
        await dropRunRole(admin, role.name);
        logger.info(
          { connection: `${namespace}/${name}`, role: role.name },
          "dropped an orphaned run role",
        );
      }
    } catch (error) {
      logger.warn({ err: error, connection: `${namespace}/${name}` }, "sweeping run roles failed");
    }
  }
  for (const owner of await options.tokens.owners().catch(() => [])) {
    if (live(owner)) continue;
    const run = { metadata: { ...owner } } as LangGraphRun;
    try {
      for (const connection of options.connections.list(owner.namespace)) {
        if (connection.spec.http?.auth?.oauth2ClientCredentials)
          await upstream.revoke(run, connection);
      }
      await upstream.forgetTokens(run);
      logger.info(
        { run: `${owner.namespace}/${owner.name}` },
        "revoked the tokens of an ended run",
      );
    } catch (error) {
      logger.warn(
        { err: error, run: `${owner.namespace}/${owner.name}` },
        "sweeping run tokens failed",
      );
    }
  }
}
