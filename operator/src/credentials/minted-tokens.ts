// OAuth 2.0 tokens minted for runs, kept in one Secret per run in the operator's own namespace
// until the run ends: any replica, even after a crash, can then revoke them (RFC 7009).
import { createHash } from "node:crypto";
import type { CoreV1Api, V1Secret } from "@kubernetes/client-node";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { isConflict, isNotFound, unlessNotFound } from "../kube/api-errors.ts";
import { patchAs } from "../kube/meta.ts";

export const mintedTokensLabel = "langgraph-jit.dev/minted-tokens";
const runUidLabel = "langgraph-jit.dev/run-uid";

export interface MintedToken {
  /** The data key: the connection's record key and a digest of the token. */
  key: string;
  /** The connection's tokenRecordKey (its name, for a namespaced Connection). */
  connection: string;
  token: string;
  /** RFC 3339; absent when the server did not say. */
  expiresAt?: string;
}

/** The run a token Secret belongs to, from its labels and annotations. */
export interface TokenOwner {
  namespace: string;
  name: string;
  uid: string;
}

export class MintedTokens {
  readonly #core: CoreV1Api;
  readonly #namespace: string;

  constructor(core: CoreV1Api, namespace: string) {
    this.#core = core;
    this.#namespace = namespace;
  }

  /** Records a token before it is handed out, so it can always be revoked. */
  async remember(run: LangGraphRun, connection: string, token: string, expiresAt?: Date) {
    const uid = run.metadata?.uid ?? "";
    const digest = createHash("sha256").update(token).digest("hex").slice(0, 16);
    const entry = {
      connection,
      token,
      ...(expiresAt ? { expiresAt: expiresAt.toISOString() } : {}),
    };
    const data = {
      [`${connection}.${digest}`]: Buffer.from(JSON.stringify(entry)).toString("base64"),
    };
    const name = secretName(uid);
    for (;;) {
      try {
        await this.#core.patchNamespacedSecret(
          { namespace: this.#namespace, name, body: { data } },
          patchAs.merge,
        );
        return;
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
      try {
        await this.#core.createNamespacedSecret({
          namespace: this.#namespace,
          body: {
            metadata: {
              name,
              labels: { [mintedTokensLabel]: "true", [runUidLabel]: uid },
              annotations: {
                [`${mintedTokensLabel}-run`]: `${run.metadata?.namespace}/${run.metadata?.name}`,
              },
            },
            type: "Opaque",
            data,
          },
        });
        return;
      } catch (error) {
        // Another replica created it first: add to theirs.
        if (!isConflict(error)) throw error;
      }
    }
  }

  /** The run's tokens for one connection (all connections when omitted). */
  async list(runUid: string, connection?: string): Promise<MintedToken[]> {
    const secret = await unlessNotFound(
      this.#core.readNamespacedSecret({ namespace: this.#namespace, name: secretName(runUid) }),
    );
    return entriesOf(secret).filter((t) => connection === undefined || t.connection === connection);
  }

  /** Drops revoked tokens from the record. */
  async forget(runUid: string, keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    const data = Object.fromEntries(keys.map((key) => [key, null]));
    await this.#core
      .patchNamespacedSecret(
        { namespace: this.#namespace, name: secretName(runUid), body: { data } },
        patchAs.merge,
      )
      .catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
  }

  /** Deletes the run's record once every token in it is revoked or expired. */
  async remove(runUid: string): Promise<void> {
    await this.#core
      .deleteNamespacedSecret({ namespace: this.#namespace, name: secretName(runUid) })
      .catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
  }

  /** Every run with a token record, for the sweeper. */
  async owners(): Promise<TokenOwner[]> {
    const list = await this.#core.listNamespacedSecret({
      namespace: this.#namespace,
      labelSelector: mintedTokensLabel,
    });
    return list.items.flatMap((secret) => {
      const uid = secret.metadata?.labels?.[runUidLabel];
      const [namespace, name] =
        secret.metadata?.annotations?.[`${mintedTokensLabel}-run`]?.split("/") ?? [];
      return uid && namespace && name ? [{ namespace, name, uid }] : [];
    });
  }
}

function secretName(runUid: string): string {
  return `lgjit-tokens-${runUid}`;
}

function entriesOf(secret: V1Secret | undefined): MintedToken[] {
  return Object.entries(secret?.data ?? {}).flatMap(([key, value]) => {
    try {
      const entry = JSON.parse(Buffer.from(value, "base64").toString("utf8"));
      return typeof entry.token === "string" && typeof entry.connection === "string"
        ? [{ key, ...entry }]
        : [];
    } catch {
      return [];
    }
  });
}
