// A namespaced Connection keeps its Secrets beside the runs, so it is only as safe as who may
// read them there (ADR 0011). Its CredentialsExposed condition says whether a subject of a
// RoleBinding in its namespace, other than the operator, may `get` one of them, as the API
// server's own authorizer answers (a SubjectAccessReview per subject and Secret).
import type { CustomObjectsApi, RbacV1Subject, V1RoleBinding } from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { Condition } from "../../../api/condition.ts";
import {
  type Connection,
  connectionSecretNames,
  group,
  resources,
  version,
} from "../../../api/v1alpha1.ts";
import type { AuthenticatedUser } from "../kube/access-review.ts";
import type { WatchedCache } from "../kube/cache.ts";
import { Controller, type ReconcileResult, type Reconciler } from "../kube/controller.ts";
import type { EventSink } from "../kube/events.ts";
import { metaTime, patchAs } from "../kube/meta.ts";
import { objectKey } from "../kube/object-store.ts";
import { type ConditionUpdate, findCondition, setCondition } from "./conditions.ts";

export const credentialsExposed = "CredentialsExposed";

/** Writes a Connection's status conditions. */
export interface ConnectionConditionWriter {
  write(connection: Connection, conditions: Condition[]): Promise<void>;
}

export interface CredentialsExposedDeps {
  connections: WatchedCache<Connection>;
  roleBindings: WatchedCache<V1RoleBinding>;
  /** Whether the authorizer lets this user get the Secret; throws when it cannot answer. */
  userMayGetSecret(user: AuthenticatedUser, namespace: string, secret: string): Promise<boolean>;
  conditions: ConnectionConditionWriter;
  events: EventSink;
  /** The operator's own user name: it reads the Secrets by design. */
  operatorUsername: string;
  /** How often every Connection is reviewed again: ClusterRoles change without an event here. */
  resyncMs?: number;
  now?: () => Date;
}

/** Whom a RoleBinding subject stands for, as a SubjectAccessReview names them. */
export function subjectUser(subject: RbacV1Subject, namespace: string): AuthenticatedUser {
  if (subject.kind === "Group") return { username: "", groups: [subject.name] };
  if (subject.kind === "ServiceAccount") {
    const home = subject.namespace || namespace;
    return {
      username: `system:serviceaccount:${home}:${subject.name}`,
      groups: ["system:serviceaccounts", `system:serviceaccounts:${home}`, "system:authenticated"],
    };
  }
  return { username: subject.name };
}

export class CredentialsExposedReconciler implements Reconciler {
  readonly #deps: CredentialsExposedDeps;

  constructor(deps: CredentialsExposedDeps) {
    this.#deps = deps;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { connections, conditions, events } = this.#deps;
    const resyncMs = this.#deps.resyncMs ?? 5 * 60_000;
    const [namespace = "", name = ""] = key.split("/");
    const connection = connections.get(namespace, name);
    if (!connection || connection.metadata?.deletionTimestamp) return undefined;
    const readers = await this.#readers(connection, namespace);
    const update: ConditionUpdate =
      readers.length > 0
        ? {
            type: credentialsExposed,
            status: "True",
            reason: "SecretReadable",
            message: `${readers.slice(0, 3).join("; ")}${readers.length > 3 ? `; and ${readers.length - 3} more` : ""}: hold these credentials in a ClusterConnection, or take that access away`,
          }
        : {
            type: credentialsExposed,
            status: "False",
            reason: "SecretsUnreadable",
            message: `no subject of a RoleBinding in namespace "${namespace}" but langgraph-jit may get its Secrets`,
          };
    const current = connection.status?.conditions ?? [];
    const before = findCondition(current, credentialsExposed);
    if (
      before?.status === update.status &&
      before.reason === update.reason &&
      before.message === update.message &&
      before.observedGeneration === connection.metadata?.generation
    ) {
      return { requeueAfterMs: resyncMs };
    }
    const now = metaTime(this.#deps.now?.() ?? new Date());
    await conditions.write(
      connection,
      setCondition(current, update, connection.metadata?.generation, now),
    );
    if (update.status === "True" && before?.status !== "True") {
      await events.record(connection, "Warning", credentialsExposed, "Review", update.message);
    }
    return { requeueAfterMs: resyncMs };
  }

  /** "User x (RoleBinding ns/b) may get Secret ns/s" for each subject that may. */
  async #readers(connection: Connection, namespace: string): Promise<string[]> {
    const secrets = connectionSecretNames(connection);
    if (secrets.length === 0) return [];
    const subjects = new Map<string, { subject: RbacV1Subject; binding: string }>();
    for (const binding of this.#deps.roleBindings.list(namespace)) {
      for (const subject of binding.subjects ?? []) {
        const id = `${subject.kind}/${subject.namespace ?? ""}/${subject.name}`;
        if (!subjects.has(id)) subjects.set(id, { subject, binding: binding.metadata?.name ?? "" });
      }
    }
    const readers: string[] = [];
    for (const { subject, binding } of subjects.values()) {
      const user = subjectUser(subject, namespace);
      if (user.username === this.#deps.operatorUsername) continue;
      for (const secret of secrets) {
        if (await this.#deps.userMayGetSecret(user, namespace, secret)) {
          readers.push(
            `${subject.kind} ${subject.name} (RoleBinding ${namespace}/${binding}) may get Secret ${namespace}/${secret}`,
          );
          break;
        }
      }
    }
    return readers;
  }
}

/** Reviews a Connection when it or a RoleBinding of its namespace changes, and periodically. */
export function credentialsExposedController(
  deps: CredentialsExposedDeps,
  logger: Logger,
): Controller {
  const controller = new Controller({
    name: "credentials-exposed",
    reconciler: new CredentialsExposedReconciler(deps),
    workers: 1,
    logger,
    allKeys: () => deps.connections.list().map(objectKey),
  });
  deps.connections.onChange((connection) => controller.enqueue(objectKey(connection)));
  deps.roleBindings.onChange((binding) => {
    for (const connection of deps.connections.list(binding.metadata?.namespace ?? "")) {
      controller.enqueue(objectKey(connection));
    }
  });
  return controller;
}

/** Connection status through the API server's status subresource. */
export class KubeConnectionConditions implements ConnectionConditionWriter {
  readonly #custom: CustomObjectsApi;

  constructor(custom: CustomObjectsApi) {
    this.#custom = custom;
  }

  async write(connection: Connection, conditions: Condition[]): Promise<void> {
    await this.#custom.patchNamespacedCustomObjectStatus(
      {
        group,
        version,
        namespace: connection.metadata?.namespace ?? "",
        plural: resources.connections,
        name: connection.metadata?.name ?? "",
        body: { status: { conditions } },
      },
      patchAs.merge,
    );
  }
}
