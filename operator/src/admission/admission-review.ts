// The admission.k8s.io/v1 AdmissionReview wire types our webhooks read and answer.
export interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface AdmissionRequest<T = unknown> {
  uid: string;
  kind: { group: string; version: string; kind: string };
  resource: { group: string; version: string; resource: string };
  subResource?: string;
  namespace?: string;
  name?: string;
  operation: "CREATE" | "UPDATE" | "DELETE" | "CONNECT";
  userInfo: UserInfo;
  object?: T;
  oldObject?: T;
  dryRun?: boolean;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; reason?: string; message: string };
  patchType?: "JSONPatch";
  /** base64 of a JSON Patch document. */
  patch?: string;
  warnings?: string[];
}

export interface AdmissionReview<T = unknown> {
  apiVersion: "admission.k8s.io/v1";
  kind: "AdmissionReview";
  request?: AdmissionRequest<T>;
  response?: AdmissionResponse;
}

export type JsonPatchOperation = {
  op: "add" | "replace" | "remove";
  path: string;
  value?: unknown;
};

export function allow(request: AdmissionRequest, patch?: JsonPatchOperation[]): AdmissionResponse {
  if (!patch || patch.length === 0) return { uid: request.uid, allowed: true };
  return {
    uid: request.uid,
    allowed: true,
    patchType: "JSONPatch",
    patch: Buffer.from(JSON.stringify(patch)).toString("base64"),
  };
}

const statusReasons: Record<number, string> = {
  403: "Forbidden",
  422: "Invalid",
  503: "ServiceUnavailable",
};

export function deny(
  request: AdmissionRequest,
  message: string,
  code: 403 | 422 | 503 = 403,
): AdmissionResponse {
  return {
    uid: request.uid,
    allowed: false,
    status: { code, reason: statusReasons[code] ?? "Forbidden", message },
  };
}

/** Escapes a key for use as one JSON Pointer segment (RFC 6901). */
export function pointerSegment(key: string): string {
  return key.replaceAll("~", "~0").replaceAll("/", "~1");
}

/** The JSON Patch that adds these annotations to an object, whether or not it has any. */
export function addAnnotations(
  obj: { metadata?: { annotations?: Record<string, string> } },
  values: Record<string, string>,
): JsonPatchOperation[] {
  if (!obj.metadata?.annotations) {
    return [{ op: "add", path: "/metadata/annotations", value: values }];
  }
  return Object.entries(values).map(([key, value]) => ({
    op: "add",
    path: `/metadata/annotations/${pointerSegment(key)}`,
    value,
  }));
}
