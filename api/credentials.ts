// The wire contract between the operator's credential API and the sidecar: paths, the run
// JWT's claims, the credential bundle and the error body. Both sides import only this file.
import type { Action, Grant } from "./v1alpha1.ts";

/** Paths of the operator's HTTPS credential API (served by every replica). */
export const credentialApi = {
  /** POST with `authorization: Bearer <projected service-account token>`: a CredentialBundle. */
  issue: "/v1/credentials",
  /**
   * GET with `authorization: Bearer <run JWT>`: 200 RunTokenStatus while the run's credential
   * holds, 401 CredentialApiError (reason Revoked) once it does not. `?waitSeconds=N` (at most
   * maxStatusWaitSeconds) holds the answer until the state changes or N seconds pass.
   */
  status: "/v1/credentials/status",
  /**
   * POST with `authorization: Bearer <run JWT>` and a SessionEventsBatch: 200 SessionEventsAck.
   * Accepted after the run ends too (a sidecar's last events), while the JWT's signature holds.
   */
  events: "/v1/sessions/events",
  /**
   * POST with `authorization: Bearer <run JWT>` and a HoldRequest: 201 HoldState. The operator
   * records the command as a HeldCommand for approvers to decide.
   */
  holds: "/v1/holds",
  /**
   * GET `?name=NAME&waitSeconds=N` with the run JWT: the HoldState of one of the run's held
   * commands, held until it is decided or N seconds (at most maxStatusWaitSeconds) pass.
   */
  holdState: "/v1/holds/state",
  /** GET: the JSON Web Key Set run JWTs verify against. */
  jwks: "/.well-known/jwks.json",
} as const;

export const maxStatusWaitSeconds = 30;

/** The largest request body a sidecar holds for a decision; a larger held request is refused. */
export const maxHeldBodyBytes = 1024 * 1024;
/** The longest SQL statement a sidecar holds; approvers read all of it. */
export const maxHeldStatementLength = 64 * 1024;

/** A command the sidecar holds: what approvers see, and the digest of what it will send. */
export interface HoldRequest {
  connection: string;
  action: Action;
  http?: { method: string; path: string };
  sql?: { statement: string };
  body?: { sha256: string; bytes: number };
}

/** A held command's decision as the operator counts it now. */
export interface HoldState {
  /** The HeldCommand's name: what approvers approve (kubectl jit approve NAME). */
  name: string;
  phase: "Pending" | "Approved" | "Denied" | "Expired";
  /** Who decided and why, or what it waits for. */
  message: string;
  expiresAt: string;
}

/** Audience of the projected service-account token the sidecar presents. */
export const podTokenAudience = "langgraph-jit";
/** Audience of the run JWT the operator issues. */
export const runTokenAudience = "langgraph-jit-sidecar";
/** Signature algorithms a run JWT may use; anything else (`none` included) is refused. */
export const runTokenAlgorithms = ["ES256"] as const;

/** What the grant lets the run do on one connection: the sidecar enforces exactly this. */
export interface GrantClaim {
  connection: string;
  type: "postgres" | "http";
  /** The actions the run asked for and a grant allows. */
  actions: Action[];
  http?: Grant["http"];
  masking?: Grant["masking"];
  approval?: Grant["approval"];
}

/**
 * The private claims of a run JWT. Registered claims: iss (the operator URL), aud
 * runTokenAudience, sub (the run's uid), jti, iat, exp (never past the run's deadline).
 */
export interface RunClaims {
  run: { namespace: string; name: string; uid: string; deadline: string };
  pod: { name: string; uid: string };
  grants: GrantClaim[];
}

export interface PostgresCredential {
  type: "postgres";
  host: string;
  port: number;
  database: string;
  sslMode: "disable" | "require" | "verify-full";
  /** PEM of the CA that signs the server's certificate, when the Connection names one. */
  caPem?: string;
  username: string;
  password: string;
  /** True for a role minted for this run (dropped when it ends), false for a static one. */
  dynamic: boolean;
}

export interface HttpCredential {
  type: "http";
  url: string;
  caPem?: string;
  /** Headers the sidecar adds to every upstream request (lower-case names); may be empty. */
  headers: Record<string, string>;
  /** When the credential stops working (a minted OAuth 2.0 token); absent: with the bundle. */
  expiresAt?: string;
  /** The upstream's Set-Cookie reaches the graph (Connection spec.http.allowCookies). */
  allowCookies?: boolean;
}

export type UpstreamCredential = PostgresCredential | HttpCredential;

/** The answer to a successful POST /v1/credentials. */
export interface CredentialBundle {
  /** The run JWT. */
  token: string;
  /** RFC 3339; the earliest expiry of the token and every credential: refresh before it. */
  expiresAt: string;
  /** By connection name. */
  credentials: Record<string, UpstreamCredential>;
}

/** GET /v1/credentials/status while the credential holds. */
export interface RunTokenStatus {
  state: "active";
  /** The run's deadline (RFC 3339). */
  deadline: string;
}

/** Why the credential API refused: CamelCase, stable, for callers to branch on. */
export type RefusalReason =
  | "Unauthenticated"
  | "TokenInvalid"
  | "NotARunPod"
  | "PodNotFound"
  | "RunNotFound"
  | "RunNotRunning"
  | "DeadlineExceeded"
  | "AccessRevoked"
  | "Revoked"
  | "CredentialUnavailable";

/** The body of every 4xx/5xx answer of the credential API. */
export interface CredentialApiError {
  error: string;
  reason:
    | RefusalReason
    | "BadRequest"
    | "NotFound"
    | "MethodNotAllowed"
    | "TooManyRequests"
    | "Internal";
}
