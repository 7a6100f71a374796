// Kubernetes Events (events.k8s.io/v1) about the objects the operator manages.
import { randomBytes } from "node:crypto";
import {
  EventsV1Api,
  type KubeConfig,
  type KubernetesObject,
  V1MicroTime,
} from "@kubernetes/client-node";
import type { Logger } from "pino";

export type EventType = "Normal" | "Warning";
export const reportingController = "langgraph-jit.dev/operator";

/** Where controllers send Events; tests keep them in memory. */
export interface EventSink {
  /** Records an Event; a failure to record is logged, never thrown. */
  record(
    regarding: KubernetesObject,
    type: EventType,
    reason: string,
    action: string,
    note: string,
  ): Promise<void>;
}

export class EventRecorder implements EventSink {
  readonly #api: EventsV1Api;
  readonly #instance: string;
  readonly #logger: Logger;

  constructor(kc: KubeConfig, instance: string, logger: Logger) {
    this.#api = kc.makeApiClient(EventsV1Api);
    this.#instance = instance;
    this.#logger = logger;
  }

  async record(
    regarding: KubernetesObject,
    type: EventType,
    reason: string,
    action: string,
    note: string,
  ): Promise<void> {
    const namespace = regarding.metadata?.namespace ?? "default";
    const name = `${regarding.metadata?.name}.${Date.now().toString(16)}${randomBytes(2).toString("hex")}`;
    try {
      await this.#api.createNamespacedEvent({
        namespace,
        body: {
          metadata: { name, namespace },
          eventTime: new V1MicroTime(),
          reportingController,
          reportingInstance: this.#instance,
          action,
          reason,
          type,
          note: note.slice(0, 1024),
          regarding: {
            apiVersion: regarding.apiVersion,
            kind: regarding.kind,
            name: regarding.metadata?.name,
            namespace,
            uid: regarding.metadata?.uid,
            resourceVersion: regarding.metadata?.resourceVersion,
          },
        },
      });
    } catch (error) {
      this.#logger.warn({ err: error, reason }, "could not record an event");
    }
  }
}
