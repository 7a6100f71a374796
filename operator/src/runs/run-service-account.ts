// The ServiceAccount a run's pod runs as. By default langgraph-jit-run, which the operator
// makes in each namespace that has runs and binds to nothing; an AccessPolicy may name
// another, which must exist. The pod never holds a token of either (automount is off).
import type { CoreV1Api } from "@kubernetes/client-node";
import { BoundedCache } from "../../../api/bounded-cache.ts";
import { defaultRunServiceAccount } from "../../../api/v1alpha1.ts";
import { isConflict, unlessNotFound } from "../kube/api-errors.ts";

// One entry per namespace with runs; the bound keeps a cluster of many namespaces from growing it.
const rememberedNamespaces = 10_000;
/** How long a made account is taken to still exist before it is made again. */
const rememberMs = 60_000;

export class RunServiceAccounts {
  readonly #core: CoreV1Api;
  /** The namespaces whose default run ServiceAccount was made or found in the last rememberMs. */
  readonly #made = new BoundedCache<string, true>({
    maxEntries: rememberedNamespaces,
    ttlMs: rememberMs,
  });

  constructor(core: CoreV1Api) {
    this.#core = core;
  }

  /** Makes sure the account exists; returns why the run cannot start when it cannot. */
  async ensure(namespace: string, name: string): Promise<string | undefined> {
    if (name === defaultRunServiceAccount) {
      if (this.#made.has(namespace)) return undefined;
      await this.#core
        .createNamespacedServiceAccount({
          namespace,
          body: {
            metadata: {
              name,
              labels: { "app.kubernetes.io/managed-by": "langgraph-jit" },
              annotations: {
                "langgraph-jit.dev/purpose":
                  "the identity of LangGraphRun pods: bind nothing to it",
              },
            },
            automountServiceAccountToken: false,
          },
        })
        .catch((error: unknown) => {
          if (!isConflict(error)) throw error;
        });
      this.#made.set(namespace, true);
      return undefined;
    }
    const account = await unlessNotFound(
      this.#core.readNamespacedServiceAccount({ namespace, name }),
    );
    return account
      ? undefined
      : `ServiceAccount ${namespace}/${name}, which the run's AccessPolicy names for runs, does not exist`;
  }
}
