// The sidecar's configuration: the environment the operator's Job builder sets, parsed and
// validated once at start. Every error names the variable to fix.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { errorMessage } from "../../api/errors.ts";
import { type LogLevel, logLevels } from "../../api/log-levels.ts";
import { sidecarEnv, sidecarPorts, stateDirectory } from "../../api/sidecar-contract.ts";

export interface SidecarConfig {
  /** The LangGraphRun's name and uid; the uid is the run JWT's subject. */
  run: string;
  /** Unset for a tagged pod's sidecar, which learns it from its first credential. */
  runUid: string | undefined;
  namespace: string | undefined;
  podName: string | undefined;
  podUid: string | undefined;
  /** The operator's https base URL without a trailing slash; also the run JWT's issuer. */
  operatorUrl: string;
  /** PEM of the CA(s) the operator's certificate must chain to; no other CA is trusted. */
  operatorCa: string;
  /** The projected service-account token; the kubelet rotates it, so it is read per use. */
  tokenFile: string;
  stateDir: string;
  /** Where the graph finds the pod CA's trust files (shared read-only); none are written if unset. */
  trustDir: string | undefined;
  /** The loopback port of each connection's listener, by connection name. */
  listeners: Map<string, number>;
  proxyPort: number;
  admin: { host: string; port: number };
  logLevel: LogLevel;
}

/** The environment cannot configure a sidecar; the message names the variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

type Environment = Record<string, string | undefined>;

export function loadConfig(
  env: Environment = process.env,
  readFile: (path: string) => string = (path) => readFileSync(path, "utf8"),
): SidecarConfig {
  return {
    run: required(env, sidecarEnv.run),
    runUid: optional(env, sidecarEnv.runUid),
    namespace: optional(env, sidecarEnv.namespace),
    podName: optional(env, sidecarEnv.podName),
    podUid: optional(env, sidecarEnv.podUid),
    operatorUrl: operatorUrl(required(env, sidecarEnv.operatorUrl)),
    operatorCa: operatorCa(env, readFile),
    tokenFile: required(env, sidecarEnv.tokenFile),
    stateDir: optional(env, sidecarEnv.stateDir) ?? stateDirectory,
    trustDir: optional(env, sidecarEnv.trustDir),
    listeners: listeners(optional(env, sidecarEnv.listeners) ?? "{}"),
    proxyPort: port(env, sidecarEnv.proxyPort, sidecarPorts.proxy),
    admin: {
      host: optional(env, sidecarEnv.adminHost) ?? "127.0.0.1",
      port: port(env, sidecarEnv.adminPort, sidecarPorts.admin),
    },
    logLevel: logLevel(optional(env, sidecarEnv.logLevel) ?? "info"),
  };
}

function optional(env: Environment, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

function required(env: Environment, name: string): string {
  const value = optional(env, name);
  if (value === undefined) {
    throw new ConfigError(`${name} is not set; the operator's Job builder sets it`);
  }
  return value;
}

function operatorUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`LGJIT_OPERATOR_URL "${value}" is not a URL`);
  }
  // The pod's token is a bearer credential: it only ever travels over verified TLS.
  if (url.protocol !== "https:") {
    throw new ConfigError(`LGJIT_OPERATOR_URL "${value}" must be an https URL`);
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new ConfigError(
      `LGJIT_OPERATOR_URL "${value}" must be a base URL, without credentials, query or fragment`,
    );
  }
  // The operator signs with iss = this same string; only trailing slashes are dropped.
  return value.replace(/\/+$/, "");
}

function operatorCa(env: Environment, readFile: (path: string) => string): string {
  const inline = optional(env, sidecarEnv.operatorCa);
  const file = optional(env, sidecarEnv.operatorCaFile);
  if (inline && file) {
    throw new ConfigError("set only one of LGJIT_OPERATOR_CA and LGJIT_OPERATOR_CA_FILE");
  }
  if (!inline && !file) {
    throw new ConfigError(
      "neither LGJIT_OPERATOR_CA (PEM) nor LGJIT_OPERATOR_CA_FILE is set: the sidecar trusts " +
        "only the CA of the operator's certificate",
    );
  }
  let pem = inline ?? "";
  const name = file ? sidecarEnv.operatorCaFile : sidecarEnv.operatorCa;
  if (file) {
    try {
      pem = readFile(file);
    } catch (error) {
      throw new ConfigError(
        `LGJIT_OPERATOR_CA_FILE "${file}" cannot be read: ${errorMessage(error)}`,
      );
    }
  }
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError(`${name} holds no PEM certificate`);
  for (const [index, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (error) {
      throw new ConfigError(
        `${name}: certificate ${index + 1} is not valid: ${errorMessage(error)}`,
      );
    }
  }
  return blocks.join("\n");
}

function port(env: Environment, name: string, fallback: number): number {
  const value = optional(env, name);
  if (value === undefined) return fallback;
  const parsed = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(parsed >= 1 && parsed <= 65535)) {
    throw new ConfigError(`${name} "${value}" is not a port number (1-65535)`);
  }
  return parsed;
}

function listeners(value: string): Map<string, number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (error) {
    throw new ConfigError(`LGJIT_LISTENERS is not JSON: ${errorMessage(error)}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError("LGJIT_LISTENERS must be a JSON object of connection name to port");
  }
  const result = new Map<string, number>();
  for (const [connection, listenerPort] of Object.entries(parsed)) {
    if (!Number.isInteger(listenerPort) || listenerPort < 1 || listenerPort > 65535) {
      throw new ConfigError(
        `LGJIT_LISTENERS: connection "${connection}" has port ${JSON.stringify(listenerPort)}, ` +
          "not a port number (1-65535)",
      );
    }
    result.set(connection, listenerPort);
  }
  return result;
}

function logLevel(value: string): LogLevel {
  const level = logLevels.find((candidate) => candidate === value);
  if (!level) {
    throw new ConfigError(`LGJIT_LOG_LEVEL "${value}" is not one of ${logLevels.join(", ")}`);
  }
  return level;
}
