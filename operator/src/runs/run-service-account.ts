// The ServiceAccount a run's pod runs as. By default langgraph-jit-run, which the operator
// makes in each namespace that has runs and binds to nothing; an AccessPolicy may name
// another, which must exist. The pod never holds a token of either (automount is off).
import type { CoreV1Api } from "@kubernetes/client-node";
import { defaultRunServiceAccount } from "../../../api/v1alpha1.ts";
import { isConflict, unlessNotFound } from "../kube/api-errors.ts";

const rememberedNamespaces = 10_000;
/** How long a made account is taken to still exist before it is made again. */
const rememberMs = 60_000;

export class RunServiceAccounts {
  readonly #core: CoreV1Api;
  /** When each namespace's default run ServiceAccount was last made or found. */
  readonly #made = new Map<string, number>();

  constructor(core: CoreV1Api) {
    this.#core = core;
  }

  /** Makes sure the account exists; returns why the run cannot start when it cannot. */
  async ensure(namespace: string, name: string): Promise<string | undefined> {
    if (name === defaultRunServiceAccount) {
      if ((this.#made.get(namespace) ?? Number.NEGATIVE_INFINITY) > Date.now() - rememberMs) {
        return undefined;
      }
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
      if (this.#made.size >= rememberedNamespaces) this.#made.clear();
      this.#made.set(namespace, Date.now());
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
