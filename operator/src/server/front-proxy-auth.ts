// Who is asking, when the API server's aggregator proxies a request to us: it authenticated the
// user and names them in X-Remote-* headers, over TLS with its front-proxy client certificate.
// Those headers count only on a connection whose client certificate chains to the requestheader
// CA the API server publishes and names an allowed proxy; without that, nobody is anybody.
import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import type { CoreV1Api } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { isNotFound } from "../kube/api-errors.ts";
import { HttpError } from "./https-server.ts";

/** Where the API server publishes how it proxies (kube-system is fixed by Kubernetes). */
export const authenticationConfigMap = {
  namespace: "kube-system",
  name: "extension-apiserver-authentication",
};

export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra: Record<string, string[]>;
}

export interface RequestHeaderConfig {
  caPem: string;
  /** Common names a proxy's certificate may carry; empty: any the CA signed. */
  allowedNames: string[];
  usernameHeaders: string[];
  uidHeaders: string[];
  groupHeaders: string[];
  extraHeaderPrefixes: string[];
}

function stringList(data: Record<string, string>, key: string, fallback: string[]): string[] {
  const raw = data[key];
  if (raw === undefined || raw === "") return fallback;
  const parsed: unknown = JSON.parse(raw);
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === "string")) {
    throw new Error(`${key} is not a JSON list of strings`);
  }
  return parsed.map((item) => item.toLowerCase());
}

/** Reads the ConfigMap's requestheader keys; undefined when the API server proxies to nobody. */
export function parseRequestHeaderConfig(
  data: Record<string, string>,
): RequestHeaderConfig | undefined {
  const caPem = data["requestheader-client-ca-file"];
  if (!caPem?.includes("BEGIN CERTIFICATE")) return undefined;
  return {
    caPem,
    allowedNames: stringList(data, "requestheader-allowed-names", []),
    usernameHeaders: stringList(data, "requestheader-username-headers", ["x-remote-user"]),
    uidHeaders: stringList(data, "requestheader-uid-headers", []),
    groupHeaders: stringList(data, "requestheader-group-headers", ["x-remote-group"]),
    extraHeaderPrefixes: stringList(data, "requestheader-extra-headers-prefix", [
      "x-remote-extra-",
    ]),
  };
}

function commonNames(subject: string): string[] {
  return subject
    .split("\n")
    .filter((line) => line.startsWith("CN="))
    .map((line) => line.slice(3));
}

/** The user the front proxy names, or a 401 saying why the request proves no one. */
export function authenticateProxied(
  request: IncomingMessage,
  config: RequestHeaderConfig | undefined,
): UserInfo {
  const refuse = (why: string) => new HttpError(401, "Unauthorized", why);
  if (!config) throw refuse("the API server's front-proxy CA is not known to the operator");
  const socket = request.socket as TLSSocket;
  // The server's `ca` is the requestheader CA alone, so `authorized` means the chain ends there.
  const certificate = socket.authorized ? socket.getPeerX509Certificate() : undefined;
  if (!certificate) throw refuse("the request carries no front-proxy client certificate");
  const names = commonNames(certificate.subject);
  if (config.allowedNames.length > 0 && !names.some((n) => config.allowedNames.includes(n))) {
    throw refuse(`the client certificate (CN ${names.join(", ")}) is not an allowed proxy`);
  }
  const headers = request.headersDistinct;
  const first = (candidates: string[]) => candidates.flatMap((name) => headers[name] ?? [])[0];
  const username = first(config.usernameHeaders);
  if (!username) throw refuse("the front proxy named no user");
  const extra: Record<string, string[]> = {};
  for (const [name, values] of Object.entries(headers)) {
    const prefix = config.extraHeaderPrefixes.find((p) => name.startsWith(p));
    if (!prefix || !values) continue;
    let key: string;
    try {
      key = decodeURIComponent(name.slice(prefix.length));
    } catch {
      throw refuse(`the front proxy sent a malformed extra header ${name}`);
    }
    extra[key] = [...(extra[key] ?? []), ...values];
  }
  const uid = first(config.uidHeaders);
  return {
    username,
    ...(uid ? { uid } : {}),
    groups: config.groupHeaders.flatMap((name) => headers[name] ?? []),
    extra,
  };
}

/** Keeps the API server's requestheader configuration current (its CA can rotate). */
export class FrontProxyAuth {
  readonly #core: CoreV1Api;
  readonly #logger: Logger;
  #config: RequestHeaderConfig | undefined;

  constructor(core: CoreV1Api, logger: Logger) {
    this.#core = core;
    this.#logger = logger;
  }

  get config(): RequestHeaderConfig | undefined {
    return this.#config;
  }

  /** Rereads the ConfigMap; true when the CA changed. A failure keeps what was known. */
  async refresh(): Promise<boolean> {
    let next: RequestHeaderConfig | undefined;
    try {
      const map = await this.#core.readNamespacedConfigMap(authenticationConfigMap);
      next = parseRequestHeaderConfig(map.data ?? {});
      if (!next) this.#logger.warn("the API server has no front proxy: session API closed");
    } catch (error) {
      if (!isNotFound(error)) {
        this.#logger.warn({ err: error }, "could not read the front-proxy configuration");
        return false;
      }
      this.#logger.warn("no extension-apiserver-authentication ConfigMap: session API closed");
    }
    const changed = next?.caPem !== this.#config?.caPem;
    this.#config = next;
    return changed;
  }

  /** Rereads every intervalMs and calls onCaChange when the CA changed; returns the stop. */
  watch(onCaChange: () => void, intervalMs = 60_000): () => void {
    const timer = setInterval(() => {
      void this.refresh().then((changed) => changed && onCaChange());
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  authenticate(request: IncomingMessage): UserInfo {
    return authenticateProxied(request, this.#config);
  }
}
