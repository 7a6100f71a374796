// Ends what revocation missed: dynamic roles and OAuth 2.0 tokens whose runs are gone or no
// longer hold a credential (a crash between a run's end and its revocation, a replica that lost
// the Lease mid-revocation). The leader sweeps on start and then periodically.
import type { Logger } from "pino";
import {
  type ClusterConnection,
  type Connection,
  finishedPhases,
  type LangGraphRun,
  RunPhase,
} from "../../../api/v1alpha1.ts";
import type { Cache } from "../kube/cache.ts";
import type { LeaderTask } from "../kube/controller.ts";
import { objectKey } from "../kube/object-store.ts";
import type { MintedTokens } from "./minted-tokens.ts";
import { dropRunRole, listRunRoles } from "./postgres-roles.ts";
import type { UpstreamCredentials } from "./upstream-credentials.ts";

export interface CredentialSweeperOptions {
  connections: Cache<Connection>;
  clusterConnections: Cache<ClusterConnection>;
  runs: Cache<LangGraphRun>;
  upstream: UpstreamCredentials;
  tokens: MintedTokens;
  logger: Logger;
  /** Time between sweeps. */
  intervalMs?: number;
}

export class CredentialSweeper implements LeaderTask {
  readonly #o: CredentialSweeperOptions;
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #stopped = false;

  constructor(options: CredentialSweeperOptions) {
    this.#o = options;
  }

  start(): void {
    this.#stopped = false;
    this.#sweepThenWait();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#sweeping;
  }

  #sweepThenWait(): void {
    this.#sweeping = this.sweep().finally(() => {
      this.#sweeping = undefined;
      if (this.#stopped) return;
      this.#timer = setTimeout(() => this.#sweepThenWait(), this.#o.intervalMs ?? 10 * 60_000);
      this.#timer.unref();
    });
  }

  /** One pass over every connection's run roles and every minted token's owner. Never throws. */
  async sweep(): Promise<void> {
    const { connections, clusterConnections, upstream, tokens, logger } = this.#o;
    for (const connection of [...connections.list(), ...clusterConnections.list()]) {
      // A ClusterConnection's runs may be in any namespace.
      const namespace = connection.metadata?.namespace;
      const name = connection.metadata?.name ?? "";
      try {
        const admin = await upstream.postgresAdmin(connection);
        if (!admin) continue;
        for (const role of await listRunRoles(admin)) {
          const owner = role.comment;
          if (!owner || owner.connection !== name) continue;
          if (namespace && owner.run.namespace !== namespace) continue;
          if (this.#live(owner.run)) continue;
          await dropRunRole(admin, role.name);
          logger.info(
            { connection: objectKey(connection), role: role.name },
            "dropped an orphaned run role",
          );
        }
      } catch (error) {
        logger.warn({ err: error, connection: objectKey(connection) }, "sweeping run roles failed");
      }
    }
    for (const owner of await tokens.owners().catch(() => [])) {
      if (this.#live(owner)) continue;
      const run = { metadata: { ...owner } } as LangGraphRun;
      try {
        // What the run's namespace may have named: its own, and any ClusterConnection.
        for (const connection of [
          ...connections.list(owner.namespace),
          ...clusterConnections.list(),
        ]) {
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

  // Only an ended run's credentials go: a cache that lags another replica's issuance must not
  // take a live run's role.
  #live(owner: { namespace: string; name: string; uid: string }): boolean {
    const run = this.#o.runs.get(owner.namespace, owner.name);
    return (
      run !== undefined &&
      run.metadata?.uid === owner.uid &&
      !run.status?.credential?.revokedAt &&
      !finishedPhases.has(run.status?.phase ?? RunPhase.Pending)
    );
  }
}
