// The operator's configuration: flags, with environment fallbacks, parsed and validated once.
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { parseDuration } from "../../api/duration.ts";
import { errorMessage } from "../../api/errors.ts";
import { type LogLevel, logLevels } from "../../api/log-levels.ts";

export interface OperatorConfig {
  command: "run" | "install";
  kubeconfig: string | undefined;
  namespace: string;
  /** Where ClusterConnections' Secrets are read (ADR 0011). */
  credentialsNamespace: string;
  /** Whether namespaced Connections' Secrets are read in their own namespaces. */
  namespacedConnections: boolean;
  listen: { host: string; port: number };
  metricsListen: { host: string; port: number };
  webhookUrl: string | undefined;
  serviceName: string;
  webhookConfigurationName: string;
  webhookSecretName: string;
  signingKeySecretName: string;
  sealSecretName: string;
  runTokenTtlMs: number;
  /** Where session events are stored: a SQLite file or a PostgreSQL URL. */
  sessionStore: { kind: "sqlite"; file: string } | { kind: "postgres"; url: string };
  operatorUrl: string;
  sidecarImage: string;
  sidecarImagePullPolicy: PullPolicy;
  sidecarUid: number;
  capture: boolean;
  injectPods: boolean;
  clusterDomain: string;
  leaderElection: boolean;
  leaseName: string;
  identity: string;
  workers: number;
  logLevel: LogLevel;
}

const pullPolicies = ["Always", "IfNotPresent", "Never"] as const;
type PullPolicy = (typeof pullPolicies)[number];

/** Flag name -> [environment variable, default, description]: the README's table comes from here. */
export const options = {
  kubeconfig: ["KUBECONFIG", "", "kubeconfig file; empty: in-cluster config or ~/.kube/config"],
  namespace: [
    "LGJIT_NAMESPACE",
    "langgraph-jit",
    "the operator's own namespace (webhook Secret, Lease)",
  ],
  "credentials-namespace": [
    "LGJIT_CREDENTIALS_NAMESPACE",
    "",
    "namespace of the ClusterConnections' Secrets, which no team should read; empty: the operator's own",
  ],
  "namespaced-connections": [
    "LGJIT_NAMESPACED_CONNECTIONS",
    "true",
    "read namespaced Connections' Secrets in their own namespaces; false: refuse their credentials (the operator then needs Secrets only in its own and the credentials namespace)",
  ],
  listen: ["LGJIT_LISTEN", "0.0.0.0:8443", "HTTPS address of the webhooks and the sidecar API"],
  "metrics-listen": [
    "LGJIT_METRICS_LISTEN",
    "0.0.0.0:8080",
    "HTTP address of /metrics, /healthz, /readyz",
  ],
  "webhook-url": [
    "LGJIT_WEBHOOK_URL",
    "",
    "base URL the API server calls webhooks at; empty: the Service",
  ],
  "service-name": [
    "LGJIT_SERVICE_NAME",
    "langgraph-jit",
    "the operator's Service (webhooks, sidecar API)",
  ],
  "webhook-configuration-name": [
    "LGJIT_WEBHOOK_CONFIGURATION",
    "langgraph-jit",
    "name of the webhook configurations",
  ],
  "webhook-secret-name": [
    "LGJIT_WEBHOOK_SECRET",
    "langgraph-jit-webhook-tls",
    "Secret shared by replicas for webhook TLS",
  ],
  "signing-key-secret-name": [
    "LGJIT_SIGNING_KEY_SECRET",
    "langgraph-jit-signing-keys",
    "Secret shared by replicas for the run-token signing keys",
  ],
  "seal-secret-name": [
    "LGJIT_SEAL_SECRET",
    "langgraph-jit-seal-key",
    "Secret shared by replicas for the key that seals run status and Jobs",
  ],
  "run-token-ttl": [
    "LGJIT_RUN_TOKEN_TTL",
    "15m",
    "longest life of a run token (never past the run's deadline); sidecars refresh",
  ],
  "operator-url": [
    "LGJIT_OPERATOR_URL",
    "",
    "URL sidecars reach the operator at; empty: the Service",
  ],
  "sidecar-image": [
    "LGJIT_SIDECAR_IMAGE",
    "langgraph-jit/sidecar:0.1.0",
    "sidecar container image",
  ],
  "sidecar-image-pull-policy": [
    "LGJIT_SIDECAR_IMAGE_PULL_POLICY",
    "IfNotPresent",
    "sidecar imagePullPolicy",
  ],
  "sidecar-uid": [
    "LGJIT_SIDECAR_UID",
    "17337",
    "UID the sidecar runs as; graph containers may not use it",
  ],
  capture: [
    "LGJIT_CAPTURE",
    "false",
    "in-pod capture: only the sidecar's UID may send off loopback (for network plugins that do not enforce NetworkPolicy)",
  ],
  "inject-pods": [
    "LGJIT_INJECT_PODS",
    "false",
    "inject the sidecar into pods labelled langgraph-jit.dev/inject=true in namespaces labelled langgraph-jit.dev/inject=enabled",
  ],
  "cluster-domain": [
    "LGJIT_CLUSTER_DOMAIN",
    "cluster.local",
    "cluster DNS domain, to recognise Service host names",
  ],
  "leader-election": [
    "LGJIT_LEADER_ELECTION",
    "true",
    "elect one reconciling replica with a Lease",
  ],
  "lease-name": ["LGJIT_LEASE_NAME", "langgraph-jit-operator", "name of the leader-election Lease"],
  identity: ["POD_NAME", "", "this replica's identity in the Lease; empty: the host name"],
  workers: ["LGJIT_WORKERS", "4", "runs reconciled concurrently"],
  "session-store": [
    "LGJIT_SESSION_STORE",
    "sqlite:sessions.db",
    "session events: sqlite:<file> (one replica) or a postgres:// URL (any number)",
  ],
  "log-level": ["LGJIT_LOG_LEVEL", "info", "pino log level"],
} as const;

export class ConfigError extends Error {
  override name = "ConfigError";
}

export const usage = `usage: operator [run|install] [--flag value ...]

  run      reconcile LangGraphRuns and serve the webhooks (default)
  install  apply the CRDs and webhook configurations, then exit

flags (environment variable, default):
${Object.entries(options)
  .map(([flag, [env, value, help]]) => `  --${flag.padEnd(28)} ${help} (${env}, "${value}")`)
  .join("\n")}
`;

function address(flag: string, value: string): { host: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(value);
  const port = Number(match?.[2]);
  if (!match?.[1] || port < 0 || port > 65535) {
    throw new ConfigError(`--${flag} must be host:port, got "${value}"`);
  }
  return { host: match[1].replace(/^\[|\]$/g, ""), port };
}

function integer(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new ConfigError(`--${flag} must be an integer >= ${min}, got "${value}"`);
  return n;
}

function duration(flag: string, value: string): number {
  const ms = (() => {
    try {
      return parseDuration(value);
    } catch {
      return 0;
    }
  })();
  if (ms < 1_000)
    throw new ConfigError(`--${flag} must be a duration of 1s or more, got "${value}"`);
  return ms;
}

function sessionStore(value: string): OperatorConfig["sessionStore"] {
  if (value.startsWith("sqlite:") && value.length > "sqlite:".length) {
    return { kind: "sqlite", file: value.slice("sqlite:".length) };
  }
  if (/^postgres(ql)?:\/\//.test(value) && URL.canParse(value))
    return { kind: "postgres", url: value };
  // The value may hold a password: the message shows only its scheme.
  throw new ConfigError(
    `--session-store must be sqlite:<file> or a postgres:// URL, got one starting "${value.slice(0, 9)}"`,
  );
}

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(`--${flag} must be one of ${allowed.join(", ")}, got "${value}"`);
}

/** A Kubernetes object name: a DNS-1123 label (`label`) or subdomain. */
function objectName(
  flag: string,
  value: string,
  kind: "label" | "subdomain" = "subdomain",
): string {
  const label = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
  const pattern = kind === "label" ? `^${label}$` : `^${label}(\\.${label})*$`;
  if (value.length <= (kind === "label" ? 63 : 253) && new RegExp(pattern).test(value))
    return value;
  throw new ConfigError(
    `--${flag} must be a DNS-1123 ${kind} (lowercase letters, digits, '-'), got "${value}"`,
  );
}

function httpsUrl(flag: string, value: string): string {
  if (URL.canParse(value) && new URL(value).protocol === "https:") return value;
  throw new ConfigError(`--${flag} must be an https:// URL, got "${value}"`);
}

/** An image reference: [registry[:port]/]path[:tag][@sha256:digest], the path in lower case. */
const imagePattern =
  /^[a-z0-9]+([._-][a-z0-9]+)*(:\d+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:\w[\w.-]{0,127})?(@sha256:[a-f0-9]{64})?$/;

function imageReference(flag: string, value: string): string {
  if (imagePattern.test(value)) return value;
  throw new ConfigError(
    `--${flag} must be an image reference such as registry/name:tag, got "${value}"`,
  );
}

function boolean(flag: string, value: string): boolean {
  if (value === "true" || value === "false") return value === "true";
  throw new ConfigError(`--${flag} must be true or false, got "${value}"`);
}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig {
  const parsed = (() => {
    try {
      return parseArgs({
        args: argv,
        allowPositionals: true,
        options: Object.fromEntries(Object.keys(options).map((flag) => [flag, { type: "string" }])),
      });
    } catch (error) {
      throw new ConfigError(errorMessage(error));
    }
  })();
  const value = (flag: keyof typeof options): string => {
    const [envName, fallback] = options[flag];
    return (parsed.values[flag] as string | undefined) ?? env[envName] ?? fallback;
  };
  const [command = "run", ...extra] = parsed.positionals;
  if ((command !== "run" && command !== "install") || extra.length > 0) {
    throw new ConfigError(`unknown command "${parsed.positionals.join(" ")}"`);
  }
  const namespace = objectName("namespace", value("namespace"), "label");
  const serviceName = objectName("service-name", value("service-name"), "label");
  const listen = address("listen", value("listen"));
  const clusterDomain = objectName("cluster-domain", value("cluster-domain"));
  const webhookUrl = value("webhook-url")
    ? httpsUrl("webhook-url", value("webhook-url"))
    : undefined;
  return {
    command,
    kubeconfig: value("kubeconfig") || undefined,
    namespace,
    credentialsNamespace: value("credentials-namespace")
      ? objectName("credentials-namespace", value("credentials-namespace"), "label")
      : namespace,
    namespacedConnections: boolean("namespaced-connections", value("namespaced-connections")),
    listen,
    metricsListen: address("metrics-listen", value("metrics-listen")),
    webhookUrl,
    serviceName,
    webhookConfigurationName: objectName(
      "webhook-configuration-name",
      value("webhook-configuration-name"),
    ),
    webhookSecretName: objectName("webhook-secret-name", value("webhook-secret-name")),
    signingKeySecretName: objectName("signing-key-secret-name", value("signing-key-secret-name")),
    sealSecretName: objectName("seal-secret-name", value("seal-secret-name")),
    runTokenTtlMs: duration("run-token-ttl", value("run-token-ttl")),
    sessionStore: sessionStore(value("session-store")),
    // The run tokens' issuer: sidecars compare it as a string, so it has one spelling.
    operatorUrl: httpsUrl(
      "operator-url",
      value("operator-url") ||
        `https://${serviceName}.${namespace}.svc.${clusterDomain}:${listen.port}`,
    ).replace(/\/+$/, ""),
    sidecarImage: imageReference("sidecar-image", value("sidecar-image")),
    sidecarImagePullPolicy: oneOf(
      "sidecar-image-pull-policy",
      value("sidecar-image-pull-policy"),
      pullPolicies,
    ),
    sidecarUid: integer("sidecar-uid", value("sidecar-uid"), 1),
    capture: boolean("capture", value("capture")),
    injectPods: boolean("inject-pods", value("inject-pods")),
    clusterDomain,
    leaderElection: boolean("leader-election", value("leader-election")),
    leaseName: objectName("lease-name", value("lease-name")),
    identity: value("identity") || hostname(),
    workers: integer("workers", value("workers"), 1),
    logLevel: oneOf("log-level", value("log-level"), logLevels),
  };
}
