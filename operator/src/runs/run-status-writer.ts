// The one writer of a LangGraphRun's status: the lifecycle, credential issuance and session
// counts all go through it, so tests replace a single interface with an in-memory one.
import type { CustomObjectsApi } from "@kubernetes/client-node";
import {
  group,
  type LangGraphRun,
  type LangGraphRunStatus,
  resources,
  version,
} from "../../../api/v1alpha1.ts";
import { unlessNotFound } from "../kube/api-errors.ts";
import { patchAs } from "../kube/meta.ts";

export interface RunRef {
  namespace: string;
  name: string;
  uid: string;
}

export interface RunStatusWriter {
  /**
   * Replaces the run's status, guarded by the resourceVersion it was read at: a run changed
   * since fails with 409. Returns the run as it now stands.
   */
  write(run: LangGraphRun, status: LangGraphRunStatus): Promise<LangGraphRun>;
  /** The run as the API server holds it now (after a conflict), or undefined when gone. */
  read(namespace: string, name: string): Promise<LangGraphRun | undefined>;
  /** Sets status.session, guarded by uid so that a run recreated under the name keeps its own. */
  writeSession(run: RunRef, session: NonNullable<LangGraphRunStatus["session"]>): Promise<void>;
}

export class KubeRunStatusWriter implements RunStatusWriter {
  readonly #custom: CustomObjectsApi;

  constructor(custom: CustomObjectsApi) {
    this.#custom = custom;
  }

  async write(run: LangGraphRun, status: LangGraphRunStatus): Promise<LangGraphRun> {
    return (await this.#custom.patchNamespacedCustomObjectStatus(
      {
        group,
        version,
        namespace: run.metadata?.namespace ?? "",
        plural: resources.runs,
        name: run.metadata?.name ?? "",
        body: { metadata: { resourceVersion: run.metadata?.resourceVersion }, status },
      },
      patchAs.merge,
    )) as LangGraphRun;
  }

  async read(namespace: string, name: string): Promise<LangGraphRun | undefined> {
    return (await unlessNotFound(
      this.#custom.getNamespacedCustomObject({
        group,
        version,
        namespace,
        plural: resources.runs,
        name,
      }),
    )) as LangGraphRun | undefined;
  }

  async writeSession(
    run: RunRef,
    session: NonNullable<LangGraphRunStatus["session"]>,
  ): Promise<void> {
    await this.#custom.patchNamespacedCustomObjectStatus(
      {
        group,
        version,
        namespace: run.namespace,
        plural: resources.runs,
        name: run.name,
        body: { metadata: { uid: run.uid }, status: { session } },
      },
      patchAs.merge,
    );
  }
}
