// The per-connection credential a run's sidecar gets: a Postgres role minted for the run, the
// Connection's static secret, or an OAuth 2.0 token minted for the run. Only the sidecar sees it.
import type { CoreV1Api, V1Secret } from "@kubernetes/client-node";
import type { Logger } from "pino";
import type {
  GrantClaim,
  HttpCredential,
  PostgresCredential,
  UpstreamCredential,
} from "../../../api/credentials.ts";
import { errorMessage } from "../../../api/errors.ts";
import type { AnyConnection, LangGraphRun } from "../../../api/v1alpha1.ts";
import { apiErrorMessage, isNotFound } from "../kube/api-errors.ts";
import { objectKey } from "../kube/object-store.ts";
import { rememberFor } from "../kube/ttl-cache.ts";
import {
  isClusterConnection,
  secretNamespaceOf,
  tokenRecordKey,
} from "../policy/namespace-connections.ts";
import { HttpError } from "../server/https-server.ts";
import type { MintedTokens } from "./minted-tokens.ts";
import {
  expiryWithinRun,
  mintClientCredentialsToken,
  OAuth2TokenError,
  revokeToken,
} from "./oauth2-client-credentials.ts";
import {
  dropRunRole,
  dynamicRoleName,
  ensureRunRole,
  generateRolePassword,
  type PostgresAdmin,
  PostgresCredentialError,
  runRoleComment,
} from "./postgres-roles.ts";

type PostgresSpec = NonNullable<AnyConnection["spec"]["postgres"]>;
type OAuth2Spec = NonNullable<
  NonNullable<NonNullable<AnyConnection["spec"]["http"]>["auth"]>["oauth2ClientCredentials"]
>;

/** A Connection whose credential cannot be produced now; the sidecar retries. */
function unavailable(connection: string, why: string): HttpError {
  return new HttpError(503, "CredentialUnavailable", `connection "${connection}": ${why}`);
}

/**
 * A Connection whose credential cannot be produced as it is configured: a person must fix the
 * Connection, its Secret or the upstream. The sidecar retries rarely; the run's condition says why.
 */
function misconfigured(connection: string, why: string): HttpError {
  return new HttpError(424, "CredentialMisconfigured", `connection "${connection}": ${why}`);
}

/** Postgres failures that retrying cannot fix. */
function isPermanent(error: PostgresCredentialError): boolean {
  if (["AuthenticationFailed", "ActionRoleMissing", "RoleNotManaged"].includes(error.reason)) {
    return true;
  }
  // 42…: privileges, unknown objects; 3D000: no such database.
  return error.code?.startsWith("42") === true || error.code === "3D000";
}

/** The credential API's answer to a failure: 424 when a person must act, else 503. */
export function upstreamFailure(connection: string, error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  const message = errorMessage(error);
  const named = message.startsWith(`connection "${connection}"`)
    ? message
    : `connection "${connection}": ${message}`;
  const permanent =
    (error instanceof PostgresCredentialError && isPermanent(error)) ||
    (error instanceof OAuth2TokenError && !error.retryable);
  return permanent
    ? new HttpError(424, "CredentialMisconfigured", named)
    : new HttpError(503, "CredentialUnavailable", named, { cause: error });
}

/** How long a Secret read is reused: a rotated Secret takes effect within this. */
const secretTtlMs = 5_000;

/** Whether the Connection's credential is minted for each run, and so must be revoked. */
export function mintedPerRun(connection: AnyConnection): boolean {
  return Boolean(
    connection.spec.postgres?.credentials.dynamic ||
      connection.spec.http?.auth?.oauth2ClientCredentials,
  );
}

/** Where connections' Secrets are read (ADR 0011). */
export interface SecretPlaces {
  /** ClusterConnections' Secrets are read here. */
  credentialsNamespace: string;
  /** Whether a namespaced Connection's Secrets are read in its own namespace, or refused. */
  namespacedConnections: boolean;
}

export class UpstreamCredentials {
  readonly #readSecret: (namespace: string, name: string) => Promise<V1Secret>;
  readonly #tokens: MintedTokens;
  readonly #places: SecretPlaces;
  readonly #logger: Logger;

  constructor(core: CoreV1Api, tokens: MintedTokens, places: SecretPlaces, logger: Logger) {
    this.#tokens = tokens;
    this.#places = places;
    this.#logger = logger;
    this.#readSecret = rememberFor(secretTtlMs, (namespace: string, name: string) =>
      core.readNamespacedSecret({ namespace, name }),
    );
  }

  /** The credential for one granted connection, valid no longer than the run's deadline. */
  async issue(
    run: LangGraphRun,
    connection: AnyConnection,
    grant: GrantClaim,
    deadline: Date,
  ): Promise<UpstreamCredential> {
    const { postgres, http } = connection.spec;
    try {
      if (postgres) return await this.#postgres(run, connection, postgres, grant, deadline);
      if (http) return await this.#http(run, connection, deadline);
    } catch (error) {
      throw upstreamFailure(grant.connection, error);
    }
    throw misconfigured(grant.connection, "is neither postgres nor http");
  }

  /**
   * Ends what was minted for the run on a Connection: drops its dynamic role, revokes its OAuth
   * 2.0 tokens. A no-op for static credentials. Idempotent.
   */
  async revoke(run: LangGraphRun, connection: AnyConnection): Promise<void> {
    const postgres = connection.spec.postgres;
    if (postgres?.credentials.dynamic) {
      const admin = await this.#postgresAdmin(connection, postgres);
      await dropRunRole(admin, dynamicRoleName(runRef(run), connection.metadata?.name ?? ""));
    }
    const oauth2 = connection.spec.http?.auth?.oauth2ClientCredentials;
    if (oauth2) await this.#revokeTokens(run, connection, oauth2);
  }

  /** Deletes the run's token record once every Connection's tokens are revoked. */
  async forgetTokens(run: LangGraphRun): Promise<void> {
    await this.#tokens.remove(run.metadata?.uid ?? "");
  }

  async #revokeTokens(run: LangGraphRun, connection: AnyConnection, oauth2: OAuth2Spec) {
    const uid = run.metadata?.uid ?? "";
    const tokens = await this.#tokens.list(uid, tokenRecordKey(connection));
    if (tokens.length === 0) return;
    const client = await this.#oauth2Client(connection, oauth2);
    for (const minted of tokens) {
      if (minted.expiresAt && Date.parse(minted.expiresAt) <= Date.now()) continue;
      const outcome = await revokeToken(
        { ...client, ...(oauth2.revocationUrl ? { revocationUrl: oauth2.revocationUrl } : {}) },
        minted.token,
      );
      if (outcome === "unsupported") {
        this.#logger.warn(
          { connection: objectKey(connection), expiresAt: minted.expiresAt },
          "an OAuth 2.0 token of the run cannot be revoked (no revocationUrl, or the server refuses); it works until it expires",
        );
      }
    }
    await this.#tokens.forget(
      uid,
      tokens.map((t) => t.key),
    );
  }

  async #oauth2Client(connection: AnyConnection, oauth2: OAuth2Spec) {
    const { name, key } = oauth2.clientSecretRef;
    const caPem = await this.#caPem(connection, connection.spec.http?.caSecretRef);
    return {
      clientId: oauth2.clientId,
      clientSecret: await this.#secretValue(connection, name, key),
      ...(caPem ? { caPem } : {}),
    };
  }

  /** The admin login a dynamic Connection mints roles with. */
  async postgresAdmin(connection: AnyConnection): Promise<PostgresAdmin | undefined> {
    const postgres = connection.spec.postgres;
    return postgres?.credentials.dynamic ? this.#postgresAdmin(connection, postgres) : undefined;
  }

  async #postgres(
    run: LangGraphRun,
    connection: AnyConnection,
    spec: PostgresSpec,
    grant: GrantClaim,
    deadline: Date,
  ): Promise<PostgresCredential> {
    const admin = await this.#postgresAdmin(connection, spec);
    const dynamic = spec.credentials.dynamic;
    if (!dynamic) return { type: "postgres", ...admin, dynamic: false };
    const memberOf = grant.actions.map((action) => {
      const role = dynamic.actionRoles[action];
      if (!role) throw misconfigured(grant.connection, `has no dynamic.actionRoles.${action}`);
      return role;
    });
    const name = dynamicRoleName(runRef(run), grant.connection);
    const password = generateRolePassword();
    await ensureRunRole(admin, {
      name,
      password,
      validUntil: deadline,
      memberOf,
      comment: runRoleComment(runRef(run), grant.connection),
    });
    return { type: "postgres", ...admin, username: name, password, dynamic: true };
  }

  async #postgresAdmin(connection: AnyConnection, spec: PostgresSpec): Promise<PostgresAdmin> {
    const secret = spec.credentials.secretRef.name;
    const [username, password] = await Promise.all([
      this.#secretValue(connection, secret, "username"),
      this.#secretValue(connection, secret, "password"),
    ]);
    const caPem = await this.#caPem(connection, spec.caSecretRef);
    return {
      host: spec.host,
      port: spec.port,
      database: spec.database,
      sslMode: spec.sslMode,
      ...(caPem ? { caPem } : {}),
      username,
      password,
    };
  }

  async #http(
    run: LangGraphRun,
    connection: AnyConnection,
    deadline: Date,
  ): Promise<HttpCredential> {
    const spec = connection.spec.http;
    if (!spec) throw new Error("not an http Connection");
    const caPem = await this.#caPem(connection, spec.caSecretRef);
    const base: HttpCredential = { type: "http", url: spec.url, headers: {} };
    if (caPem) base.caPem = caPem;
    if (spec.allowCookies) base.allowCookies = true;
    const auth = spec.auth;
    if (auth?.bearer) {
      const { name, key } = auth.bearer.secretRef;
      const token = await this.#secretValue(connection, name, key);
      return { ...base, headers: { authorization: `Bearer ${token}` } };
    }
    if (auth?.header) {
      const { name, key } = auth.header.secretRef;
      const value = await this.#secretValue(connection, name, key);
      return { ...base, headers: { [auth.header.name.toLowerCase()]: value } };
    }
    if (auth?.oauth2ClientCredentials) {
      const oauth2 = auth.oauth2ClientCredentials;
      const connectionName = connection.metadata?.name ?? "";
      const client = await this.#oauth2Client(connection, oauth2);
      const token = await mintClientCredentialsToken({
        ...client,
        tokenUrl: oauth2.tokenUrl,
        scopes: oauth2.scopes ?? [],
      }).catch((error: unknown) => {
        throw upstreamFailure(connectionName, error);
      });
      // Recorded before it is handed out: a token nobody knows of could never be revoked.
      await this.#tokens.remember(
        run,
        tokenRecordKey(connection),
        token.accessToken,
        token.expiresAt,
      );
      return {
        ...base,
        headers: { authorization: `${token.tokenType} ${token.accessToken}` },
        expiresAt: expiryWithinRun(token, deadline).toISOString(),
      };
    }
    return base;
  }

  /** The CA a Connection names, as PEM; undefined when it names none. */
  async #caPem(connection: AnyConnection, ref: { name: string; key: string } | undefined) {
    return ref ? this.#secretValue(connection, ref.name, ref.key) : undefined;
  }

  /** One key of a connection's Secret, as text: in its namespace, or the credentials namespace. */
  async #secretValue(connection: AnyConnection, name: string, key: string): Promise<string> {
    const { credentialsNamespace, namespacedConnections } = this.#places;
    const namespace = secretNamespaceOf(connection, credentialsNamespace);
    const where = `key "${key}" in Secret ${namespace}/${name}`;
    const connectionName = connection.metadata?.name ?? "";
    if (!isClusterConnection(connection) && !namespacedConnections) {
      throw misconfigured(
        connectionName,
        `is a namespaced Connection, whose Secret ${namespace}/${name} this operator does not read (namespaced connections are off): make it a ClusterConnection`,
      );
    }
    const secret = await this.#readSecret(namespace, name).catch((error: unknown) => {
      if (isNotFound(error))
        throw misconfigured(connectionName, `Secret ${namespace}/${name} does not exist`);
      throw unavailable(
        connectionName,
        `Secret ${namespace}/${name} cannot be read now: ${apiErrorMessage(error)}`,
      );
    });
    const value = secret.data?.[key];
    if (value === undefined) throw misconfigured(connectionName, `has no ${where}`);
    return Buffer.from(value, "base64").toString("utf8");
  }
}

function runRef(run: LangGraphRun): { namespace: string; name: string; uid: string } {
  return {
    namespace: run.metadata?.namespace ?? "",
    name: run.metadata?.name ?? "",
    uid: run.metadata?.uid ?? "",
  };
}
