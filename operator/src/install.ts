// What a locally run operator installs (`operator install`) and every replica re-asserts on
// start: the CRDs, its namespace, the shared webhook certificate and the webhook configurations.
import { readdirSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import {
  AdmissionregistrationV1Api,
  ApiextensionsV1Api,
  ApiregistrationV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { parse } from "yaml";
import { sessionsApi } from "../../api/session-events.ts";
import { WebhookCertificates, type WebhookTlsMaterial } from "./admission/webhook-certs.ts";
import {
  mutatingConfiguration,
  validatingConfiguration,
  type WebhookTarget,
} from "./admission/webhook-configurations.ts";
import type { OperatorConfig } from "./config.ts";
import { isConflict, unlessNotFound } from "./kube/api-errors.ts";
import { loadKubeConfig } from "./kube/kube-config.ts";
import { fieldManager, patchAs } from "./kube/meta.ts";

const crdDirectory = join(import.meta.dirname, "..", "..", "crds");

/** Host names and addresses the webhook certificate must cover. */
function servingNames(config: OperatorConfig): { dnsNames: string[]; ipAddresses: string[] } {
  const service = config.serviceName;
  const ns = config.namespace;
  const dnsNames = [
    service,
    `${service}.${ns}`,
    `${service}.${ns}.svc`,
    `${service}.${ns}.svc.${config.clusterDomain}`,
  ];
  const ipAddresses: string[] = [];
  for (const url of [config.webhookUrl, config.operatorUrl]) {
    const host = url ? new URL(url).hostname.replace(/^\[|\]$/g, "") : undefined;
    if (!host) continue;
    if (isIP(host)) ipAddresses.push(host);
    else dnsNames.push(host);
  }
  return { dnsNames: [...new Set(dnsNames)], ipAddresses: [...new Set(ipAddresses)] };
}

export function webhookCertificates(kc: KubeConfig, config: OperatorConfig, logger: Logger) {
  return new WebhookCertificates({
    core: kc.makeApiClient(CoreV1Api),
    namespace: config.namespace,
    secretName: config.webhookSecretName,
    ...servingNames(config),
    logger: logger.child({ component: "webhook-certs" }),
  });
}

export async function ensureNamespace(kc: KubeConfig, name: string): Promise<void> {
  try {
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  } catch (error) {
    if (!isConflict(error)) throw error;
  }
}

export async function applyWebhookConfigurations(
  kc: KubeConfig,
  config: OperatorConfig,
  tls: WebhookTlsMaterial,
): Promise<void> {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const target: WebhookTarget = {
    name: config.webhookConfigurationName,
    namespace: config.namespace,
    caBundlePem: tls.caBundlePem,
    injectPods: config.injectPods,
    ...(config.webhookUrl
      ? { url: config.webhookUrl }
      : { service: { name: config.serviceName, port: config.listen.port } }),
  };
  const options = { name: target.name, fieldManager, force: true };
  await api.patchMutatingWebhookConfiguration(
    { ...options, body: mutatingConfiguration(target) },
    patchAs.apply,
  );
  await api.patchValidatingWebhookConfiguration(
    { ...options, body: validatingConfiguration(target) },
    patchAs.apply,
  );
}

/** The chart's APIService for stored sessions: its name is fixed by its group and version. */
export const sessionsApiServiceName = `${sessionsApi.version}.${sessionsApi.group}`;

/**
 * Gives the sessions APIService the CA the replicas serve with, when it points at this
 * operator's Service. It comes with the chart; a locally run operator has none (an APIService
 * nobody serves would break API discovery), and another installation's is left alone.
 */
export async function trustSessionsApiService(
  kc: KubeConfig,
  config: OperatorConfig,
  tls: WebhookTlsMaterial,
): Promise<void> {
  const api = kc.makeApiClient(ApiregistrationV1Api);
  const current = await unlessNotFound(api.readAPIService({ name: sessionsApiServiceName }));
  const service = current?.spec?.service;
  if (service?.namespace !== config.namespace || service.name !== config.serviceName) return;
  const caBundle = Buffer.from(tls.caBundlePem).toString("base64");
  await api.patchAPIService(
    { name: sessionsApiServiceName, body: { spec: { caBundle } } },
    patchAs.merge,
  );
}

async function applyCrds(kc: KubeConfig, logger: Logger): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  for (const file of readdirSync(crdDirectory)
    .filter((f) => f.endsWith(".yaml"))
    .sort()) {
    const crd = parse(readFileSync(join(crdDirectory, file), "utf8")) as V1CustomResourceDefinition;
    const name = crd.metadata?.name ?? "";
    await api.patchCustomResourceDefinition(
      { name, body: crd, fieldManager, force: true },
      patchAs.apply,
    );
    logger.info({ crd: name }, "applied CRD");
  }
}

export async function install(config: OperatorConfig, logger: Logger): Promise<void> {
  const kc = loadKubeConfig(config.kubeconfig);
  await applyCrds(kc, logger);
  await ensureNamespace(kc, config.namespace);
  const tls = await webhookCertificates(kc, config, logger).ensure();
  await applyWebhookConfigurations(kc, config, tls);
  logger.info(
    { webhooks: config.webhookConfigurationName },
    "installed CRDs and webhook configurations",
  );
}
