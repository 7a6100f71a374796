// Revocation: what makes a run's credentials stop working when it ends. The run token needs
// nothing here (every replica refuses it once the run's status says revoked); dynamic roles are
// dropped with their sessions; a sweeper drops roles whose runs vanished during a crash.
import type { Logger } from "pino";
import type { Connection, LangGraphRun } from "../../../api/v1alpha1.ts";
import type { Cache } from "../runs/run-controller.ts";
import { dropRunRole, listRunRoles } from "./postgres-roles.ts";
import { credentialRefusal } from "./run-of-pod.ts";
import type { UpstreamCredentials } from "./upstream-credentials.ts";

export interface RunRevoker {
  /**
   * Makes every credential the run held on these Connections stop working. Idempotent;
   * throws to be retried.
   */
  revoke(run: LangGraphRun, connections: Connection[]): Promise<void>;
}

export class CredentialRevoker implements RunRevoker {
  readonly #upstream: UpstreamCredentials;

  constructor(upstream: UpstreamCredentials) {
    this.#upstream = upstream;
  }

  async revoke(run: LangGraphRun, connections: Connection[]): Promise<void> {
    await Promise.all(connections.map((connection) => this.#upstream.revoke(run, connection)));
  }
}

/**
 * Drops the dynamic roles of every Connection whose run is gone or no longer holds a
 * credential: what a crash between a run's end and its revocation left behind.
 */
export async function sweepOrphanRoles(options: {
  connections: Connection[];
  runs: Cache<LangGraphRun>;
  upstream: UpstreamCredentials;
  logger: Logger;
}): Promise<number> {
  const { runs, upstream, logger } = options;
  let dropped = 0;
  for (const connection of options.connections) {
    const namespace = connection.metadata?.namespace ?? "";
    const name = connection.metadata?.name ?? "";
    try {
      const admin = await upstream.postgresAdmin(connection);
      if (!admin) continue;
      for (const role of await listRunRoles(admin)) {
        const owner = role.comment;
        if (owner?.run.namespace !== namespace || owner.connection !== name) continue;
        const run = runs.get(namespace, owner.run.name);
        const live =
          run !== undefined &&
          run.metadata?.uid === owner.run.uid &&
          !credentialRefusal(run, Date.now());
        if (live) continue;
        await dropRunRole(admin, role.name);
        dropped++;
        logger.info(
          { connection: `${namespace}/${name}`, role: role.name },
          "dropped an orphaned run role",
        );
      }
    } catch (error) {
      logger.warn({ err: error, connection: `${namespace}/${name}` }, "sweeping run roles failed");
    }
  }
  return dropped;
}
