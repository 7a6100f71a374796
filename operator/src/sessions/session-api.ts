// Stored sessions as an aggregated Kubernetes API (`kubectl jit logs` reads it): the API server
// authenticates the reader and proxies to us; we trust its word only over its front-proxy
// certificate and still ask it, with a SubjectAccessReview, whether that reader may get the run's
// session. Discovery is the legacy kind (the aggregator falls back to it when /apis is a 404).
import type { IncomingMessage } from "node:http";
import type { AuthorizationV1Api } from "@kubernetes/client-node";
import { type RunSession, sessionsApi, sessionsApiVersion } from "../../../api/session-events.ts";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { userMay } from "../kube/access-review.ts";
import type { UserInfo } from "../server/front-proxy-auth.ts";
import { HttpError, type JsonAnswer, type Route } from "../server/https-server.ts";
import type { SessionStore } from "./session-store.ts";

export interface SessionApiOptions {
  store: SessionStore;
  runs: { get(namespace: string, name: string): LangGraphRun | undefined };
  authenticate(request: IncomingMessage): UserInfo;
  authorization: AuthorizationV1Api;
}

const groupPath = `/apis/${sessionsApi.group}`;
const versionPath = `${groupPath}/${sessionsApi.version}`;
const objectPath = new RegExp(
  `^${versionPath.replaceAll(".", "\\.")}/namespaces/([a-z0-9-]{1,63})/${sessionsApi.resource}(?:/([a-z0-9.-]{1,253}))?$`,
);
const reasons: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  405: "MethodNotAllowed",
};

/** A failure the way every Kubernetes API answers one, so kubectl prints it as its own. */
function status(error: HttpError): JsonAnswer {
  return {
    status: error.status,
    body: {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: error.message,
      reason: reasons[error.status] ?? "InternalError",
      code: error.status,
    },
  };
}

function discovery(path: string): JsonAnswer | undefined {
  const groupVersion = { groupVersion: sessionsApiVersion, version: sessionsApi.version };
  if (path === groupPath) {
    return {
      status: 200,
      body: {
        kind: "APIGroup",
        apiVersion: "v1",
        name: sessionsApi.group,
        versions: [groupVersion],
        preferredVersion: groupVersion,
      },
    };
  }
  if (path === versionPath) {
    return {
      status: 200,
      body: {
        kind: "APIResourceList",
        apiVersion: "v1",
        groupVersion: sessionsApiVersion,
        resources: [
          {
            name: sessionsApi.resource,
            singularName: "runsession",
            namespaced: true,
            kind: sessionsApi.kind,
            verbs: ["get"],
          },
        ],
      },
    };
  }
  return undefined;
}

/** ?limit and ?continue (the last sequence number already read), validated. */
function pageOf(url: URL): { limit: number; afterSeq: number } {
  const integer = (name: string, fallback: number, min: number, max: number) => {
    const raw = url.searchParams.get(name);
    if (raw === null || raw === "") return fallback;
    // Decimal digits only: Number() would also take "0x10", "1e3" and " 5 ".
    const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new HttpError(400, "BadRequest", `${name} must be an integer from ${min} to ${max}`);
    }
    return value;
  };
  return {
    limit: integer("limit", sessionsApi.defaultLimit, 1, sessionsApi.maxLimit),
    afterSeq: integer("continue", -1, 0, Number.MAX_SAFE_INTEGER),
  };
}

export function sessionApiRoutes(options: SessionApiOptions): Record<string, Route> {
  const { store, runs, authorization } = options;

  async function authorize(user: UserInfo, namespace: string, name: string): Promise<void> {
    const allowed = await userMay(authorization, user, {
      group: sessionsApi.group,
      version: sessionsApi.version,
      resource: sessionsApi.resource,
      verb: "get",
      namespace,
      name,
    });
    if (!allowed) {
      throw new HttpError(
        403,
        "Forbidden",
        `${sessionsApi.resource}.${sessionsApi.group} "${name}" is forbidden: user "${user.username}" cannot get it in the namespace "${namespace}"`,
      );
    }
  }

  async function read(url: URL, namespace: string, name: string): Promise<RunSession> {
    const page = pageOf(url);
    const live = runs.get(namespace, name);
    const uid = live?.metadata?.uid ?? (await store.latestRun(namespace, name));
    if (!uid) {
      throw new HttpError(404, "NotFound", `no session of run "${name}" in "${namespace}"`);
    }
    // One more than asked tells whether another page follows.
    const events = await store.list(uid, { afterSeq: page.afterSeq, limit: page.limit + 1 });
    const more = events.length > page.limit;
    if (more) events.pop();
    const last = events.at(-1);
    return {
      apiVersion: sessionsApiVersion,
      kind: sessionsApi.kind,
      metadata: { name, namespace },
      run: { uid, ...(live?.status?.phase ? { phase: live.status.phase } : {}) },
      summary: await store.summary(uid),
      events,
      ...(more && last ? { continue: String(last.seq) } : {}),
    };
  }

  return {
    [`${groupPath}/`]: {
      method: "GET",
      async handle(request, url) {
        try {
          const user = options.authenticate(request);
          const path = url.pathname.replace(/\/$/, "");
          const known = discovery(path);
          if (known) return known;
          const match = objectPath.exec(path);
          if (!match) throw new HttpError(404, "NotFound", `${path} is not served here`);
          const [, namespace = "", name] = match;
          if (!name) {
            throw new HttpError(405, "MethodNotAllowed", `list is not supported: name a run`);
          }
          await authorize(user, namespace, name);
          return { status: 200, body: await read(url, namespace, name) };
        } catch (error) {
          if (error instanceof HttpError) return status(error);
          throw error;
        }
      },
    },
  };
}
