// Admission of LangGraphRuns: the requester is stamped from the API server's authentication
// of the request (request.userInfo), which no client can forge, and never changes afterwards.
import { isDeepStrictEqual } from "node:util";
import { annotations, type LangGraphRun, type Requester, RunPhase } from "../../../api/v1alpha1.ts";
import { checkTemplate, TemplateRefused } from "../runs/job-builder.ts";
import {
  type AdmissionRequest,
  type AdmissionResponse,
  allow,
  deny,
  pointerSegment,
  type UserInfo,
} from "./admission-review.ts";

const requesterField = `metadata.annotations[${annotations.requester}]`;
const immutableOnceStarted = ["access", "template", "maxDuration"] as const;

export function requesterFrom(user: UserInfo): Requester {
  return { username: user.username ?? "", uid: user.uid ?? "", groups: user.groups ?? [] };
}

/** The requester stamped on a run, or undefined when it is missing or not valid JSON. */
export function requesterOf(run: LangGraphRun): Requester | undefined {
  const raw = run.metadata?.annotations?.[annotations.requester];
  if (!raw) return undefined;
  try {
    const parsed = JSON.parse(raw) as Partial<Requester>;
    if (typeof parsed.username !== "string" || parsed.username === "") return undefined;
    return {
      username: parsed.username,
      uid: typeof parsed.uid === "string" ? parsed.uid : "",
      groups: Array.isArray(parsed.groups)
        ? parsed.groups.filter((g) => typeof g === "string")
        : [],
    };
  } catch {
    return undefined;
  }
}

/** Mutating webhook: stamps the requester on CREATE and refuses a client-supplied one. */
export function mutateRun(request: AdmissionRequest<LangGraphRun>): AdmissionResponse {
  const run = request.object;
  if (request.operation !== "CREATE" || !run) return allow(request);
  if (run.metadata?.annotations?.[annotations.requester] !== undefined) {
    return deny(
      request,
      `${requesterField} is set by langgraph-jit from your authenticated identity; a request may not set it`,
    );
  }
  const value = JSON.stringify(requesterFrom(request.userInfo));
  const patch = run.metadata?.annotations
    ? [
        {
          op: "add" as const,
          path: `/metadata/annotations/${pointerSegment(annotations.requester)}`,
          value,
        },
      ]
    : [
        {
          op: "add" as const,
          path: "/metadata/annotations",
          value: { [annotations.requester]: value },
        },
      ];
  return allow(request, patch);
}

/**
 * Validating webhook, after every mutation: the stamp matches the authenticated user on
 * CREATE, never changes on UPDATE, and the run's access, template and duration are frozen
 * once it has left Pending.
 */
export function validateRun(
  request: AdmissionRequest<LangGraphRun>,
  sidecarUid: number,
): AdmissionResponse {
  const run = request.object;
  if (!run || (request.operation !== "CREATE" && request.operation !== "UPDATE"))
    return allow(request);

  if (request.operation === "CREATE") {
    const stamped = requesterOf(run);
    if (!stamped || !isDeepStrictEqual(stamped, requesterFrom(request.userInfo))) {
      return deny(request, `${requesterField} does not match the authenticated requester`);
    }
  } else {
    const old = request.oldObject;
    const before = old?.metadata?.annotations?.[annotations.requester];
    if (run.metadata?.annotations?.[annotations.requester] !== before) {
      return deny(request, `${requesterField} is immutable`);
    }
    const phase = old?.status?.phase ?? RunPhase.Pending;
    if (phase !== RunPhase.Pending) {
      const changed = immutableOnceStarted.filter(
        (field) => !isDeepStrictEqual(run.spec?.[field], old?.spec?.[field]),
      );
      if (changed.length > 0) {
        return deny(
          request,
          `${changed.map((f) => `spec.${f}`).join(", ")} cannot change once the run has left Pending (phase ${phase})`,
        );
      }
    }
  }

  const podSpec = run.spec?.template?.spec;
  if (podSpec) {
    try {
      checkTemplate(podSpec, sidecarUid);
    } catch (error) {
      if (error instanceof TemplateRefused)
        return deny(request, `spec.template: ${error.message}`, 422);
      throw error;
    }
  }
  return allow(request);
}
