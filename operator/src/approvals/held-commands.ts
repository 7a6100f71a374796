// The HeldCommand objects: made by the operator when a sidecar holds a command, their status
// (for kubectl and the approvers' listing) written by the operator alone. Tests keep them in
// memory.
import type { CustomObjectsApi } from "@kubernetes/client-node";
import {
  group,
  type HeldCommand,
  type HeldCommandStatus,
  resources,
  version,
} from "../../../api/v1alpha1.ts";
import { unlessNotFound } from "../kube/api-errors.ts";
import { patchAs } from "../kube/meta.ts";

export interface HeldCommands {
  create(namespace: string, command: HeldCommand): Promise<HeldCommand>;
  /** The object from the API server, for one the cache has not seen (yet). */
  read(namespace: string, name: string): Promise<HeldCommand | undefined>;
  writeStatus(command: HeldCommand, status: HeldCommandStatus): Promise<void>;
}

export class KubeHeldCommands implements HeldCommands {
  readonly #custom: CustomObjectsApi;

  constructor(custom: CustomObjectsApi) {
    this.#custom = custom;
  }

  async create(namespace: string, command: HeldCommand): Promise<HeldCommand> {
    return (await this.#custom.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: resources.heldCommands,
      body: command,
    })) as HeldCommand;
  }

  async read(namespace: string, name: string): Promise<HeldCommand | undefined> {
    return (await unlessNotFound(
      this.#custom.getNamespacedCustomObject({
        group,
        version,
        namespace,
        plural: resources.heldCommands,
        name,
      }),
    )) as HeldCommand | undefined;
  }

  async writeStatus(command: HeldCommand, status: HeldCommandStatus): Promise<void> {
    await this.#custom.patchNamespacedCustomObjectStatus(
      {
        group,
        version,
        namespace: command.metadata?.namespace ?? "",
        plural: resources.heldCommands,
        name: command.metadata?.name ?? "",
        body: { metadata: { resourceVersion: command.metadata?.resourceVersion }, status },
      },
      patchAs.merge,
    );
  }
}
