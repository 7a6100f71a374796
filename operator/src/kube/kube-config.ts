// client-node 2.0.1 builds a new undici Agent, and so a new TLS connection, for every API
// request. Under load that is a handshake per call and hundreds of idle sockets held for
// their keep-alive time. This KubeConfig hands every request one shared Agent per identity.
import { KubeConfig, type RequestContext } from "@kubernetes/client-node";
import type { Dispatcher } from "undici";

export class PooledKubeConfig extends KubeConfig {
  readonly #dispatchers = new Map<string, Dispatcher>();

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const fresh = context.getDispatcher();
    if (!fresh) return;
    // Everything the Agent's TLS settings are made of: a change (a rotated cert) gets a new one.
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    const key = JSON.stringify([
      cluster?.server,
      cluster?.caData ?? cluster?.caFile,
      cluster?.skipTLSVerify,
      cluster?.tlsServerName,
      user?.name,
      user?.certData ?? user?.certFile,
      user?.keyData ?? user?.keyFile,
    ]);
    const pooled = this.#dispatchers.get(key);
    if (pooled) {
      context.setDispatcher(pooled);
      void fresh.close();
    } else {
      this.#dispatchers.set(key, fresh);
    }
  }
}

/** A KubeConfig from a file, or from the environment (in-cluster, $KUBECONFIG, ~/.kube/config). */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new PooledKubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}
