// The operator replicas' shared webhook certificates, against the real test cluster.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import { pino } from "pino";
import {
  generateCertificateAuthority,
  issueServingCertificate,
  needsRenewal,
  WebhookCertificates,
  type WebhookTlsMaterial,
} from "../../operator/src/admission/webhook-certs.ts";
import { createTestNamespace, eventually, kubeConfigFor } from "../lib/cluster.ts";

const core = kubeConfigFor("admin").makeApiClient(CoreV1Api);
const logger = pino({ level: process.env.LOG_LEVEL ?? "silent" });
const secretName = "lgjit-webhook-tls";
const dnsNames = ["lgjit-webhook.lgjit-system.svc"];
const ipAddresses = ["127.0.0.1"];
const dayMs = 24 * 60 * 60 * 1000;

function replica(namespace: string, names = dnsNames): WebhookCertificates {
  return new WebhookCertificates({
    core,
    namespace,
    secretName,
    dnsNames: names,
    ipAddresses,
    logger,
  });
}

async function readSecretData(namespace: string): Promise<Record<string, string>> {
  const secret = await core.readNamespacedSecret({ name: secretName, namespace });
  return Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([key, value]) => [
      key,
      Buffer.from(value, "base64").toString("utf8"),
    ]),
  );
}

/** Overwrites some keys of the shared Secret, as a crashed or older replica might have left it. */
async function plant(namespace: string, data: Record<string, string>): Promise<void> {
  const secret = await core.readNamespacedSecret({ name: secretName, namespace });
  const encoded = Object.fromEntries(
    Object.entries(data).map(([key, value]) => [key, Buffer.from(value).toString("base64")]),
  );
  await core.replaceNamespacedSecret({
    name: secretName,
    namespace,
    body: { ...secret, data: { ...secret.data, ...encoded } },
  });
}

function splitBundle(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (block) => new X509Certificate(block),
  );
}

function assertSignedBy(certPem: string, caPem: string): void {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), "signed by the expected CA");
}

describe("webhook certificates shared by operator replicas", () => {
  let namespace: { name: string; remove: () => Promise<void> };
  before(async () => {
    namespace = await createTestNamespace("webhook-certs");
  });
  after(async () => {
    await namespace?.remove();
  });

  it("two replicas starting together end with one Secret and the same certificates", async () => {
    const scratch = await createTestNamespace("webhook-certs-race");
    const ns = scratch.name;
    try {
      const [first, second] = await Promise.all([replica(ns).ensure(), replica(ns).ensure()]);
      assert.deepEqual(first, second);

      const secrets = await core.listNamespacedSecret({ namespace: ns });
      assert.deepEqual(
        secrets.items.map((secret) => [secret.metadata?.name, secret.type]),
        [[secretName, "kubernetes.io/tls"]],
      );
      const stored = await readSecretData(ns);
      assert.equal(stored["tls.crt"], first.certPem);
      assert.equal(stored["tls.key"], first.keyPem);
      assert.equal(stored["ca-bundle.crt"], first.caBundlePem);
      assert.equal(stored["ca.crt"], first.caBundlePem, "a fresh bundle is the one CA");
      assertSignedBy(first.certPem, stored["ca.crt"] ?? "");
      assert.ok(new X509Certificate(first.certPem).checkHost(dnsNames[0] ?? ""));
    } finally {
      await scratch.remove();
    }
  });

  it("adopts what is stored when nothing needs to change", async () => {
    const created = await replica(namespace.name).ensure();
    const before = await core.readNamespacedSecret({ name: secretName, namespace: namespace.name });
    assert.deepEqual(await replica(namespace.name).ensure(), created);
    const after = await core.readNamespacedSecret({ name: secretName, namespace: namespace.name });
    assert.equal(after.metadata?.resourceVersion, before.metadata?.resourceVersion);
  });

  it("rotates a serving certificate that is about to expire, from the same CA", async () => {
    await replica(namespace.name).ensure();
    const stored = await readSecretData(namespace.name);
    const ca = { certPem: stored["ca.crt"] ?? "", keyPem: stored["ca.key"] ?? "" };
    const expiring = await issueServingCertificate(ca, {
      dnsNames,
      ipAddresses,
      validityDays: 30,
      now: new Date(Date.now() - 29 * dayMs),
    });
    assert.ok(needsRenewal(expiring.certPem));
    await plant(namespace.name, { "tls.crt": expiring.certPem, "tls.key": expiring.keyPem });

    const rotated = await replica(namespace.name).ensure();
    assert.notEqual(rotated.certPem, expiring.certPem);
    assert.notEqual(rotated.keyPem, expiring.keyPem);
    assert.equal(needsRenewal(rotated.certPem), false);
    assertSignedBy(rotated.certPem, ca.certPem);
    const after = await readSecretData(namespace.name);
    assert.equal(after["ca.crt"], ca.certPem, "the CA is unchanged");
    assert.equal(after["ca.key"], ca.keyPem);
    assert.equal(after["tls.crt"], rotated.certPem);
  });

  it("tells a watching replica about a rotation another replica made", async () => {
    const watcher = replica(namespace.name);
    const initial = await watcher.ensure();
    const seen: WebhookTlsMaterial[] = [];
    const stop = watcher.watch((material) => seen.push(material), 100);
    try {
      const stored = await readSecretData(namespace.name);
      const expiring = await issueServingCertificate(
        { certPem: stored["ca.crt"] ?? "", keyPem: stored["ca.key"] ?? "" },
        { dnsNames, ipAddresses, validityDays: 30, now: new Date(Date.now() - 29 * dayMs) },
      );
      await plant(namespace.name, { "tls.crt": expiring.certPem, "tls.key": expiring.keyPem });
      const rotated = await replica(namespace.name).ensure();

      const latest = await eventually("the watcher to report the rotated certificate", async () =>
        seen.at(-1)?.certPem === (await readSecretData(namespace.name))["tls.crt"]
          ? seen.at(-1)
          : undefined,
      );
      assert.notEqual(latest.certPem, initial.certPem);
      assert.notEqual(latest.certPem, expiring.certPem);
      assert.ok(
        seen.every((material) => material.certPem !== expiring.certPem),
        "the watcher never hands out the expiring certificate",
      );
      // Either this replica or the watcher rotated it first; both end on what is stored.
      assert.equal(needsRenewal(rotated.certPem), false);
    } finally {
      stop();
    }
  });

  it("re-issues the serving certificate when the configured names change", async () => {
    const original = await replica(namespace.name).ensure();
    const newName = "lgjit-webhook.lgjit-system.svc.cluster.local";
    const widened = await replica(namespace.name, [...dnsNames, newName]).ensure();
    assert.notEqual(widened.certPem, original.certPem);
    const cert = new X509Certificate(widened.certPem);
    assert.equal(cert.checkHost(newName), newName);
    assert.equal(cert.checkHost(dnsNames[0] ?? ""), dnsNames[0]);
    assert.equal(widened.caBundlePem, original.caBundlePem, "the same CA signs it");
    assertSignedBy(widened.certPem, original.caBundlePem);

    // A replica with the old, narrower configuration is still covered: no flapping back.
    assert.deepEqual(await replica(namespace.name).ensure(), widened);
  });

  it("fills a placeholder Secret that holds no certificates", async () => {
    const scratch = await createTestNamespace("webhook-certs-empty");
    const ns = scratch.name;
    try {
      await core.createNamespacedSecret({
        namespace: ns,
        body: {
          metadata: { name: secretName },
          type: "kubernetes.io/tls",
          data: { "tls.crt": "", "tls.key": "" },
        },
      });
      const material = await replica(ns).ensure();
      const stored = await readSecretData(ns);
      assert.equal(stored["tls.crt"], material.certPem);
      assertSignedBy(material.certPem, stored["ca.crt"] ?? "");
    } finally {
      await scratch.remove();
    }
  });

  it("renews a CA due for renewal while the old one stays trusted until it expires", async () => {
    const scratch = await createTestNamespace("webhook-certs-ca");
    const ns = scratch.name;
    try {
      await replica(ns).ensure();
      const now = Date.now();
      // Valid for 5 more days of 30: due for renewal, still trusted.
      const agingCa = await generateCertificateAuthority({
        commonName: "aging webhook CA",
        validityDays: 30,
        now: new Date(now - 25 * dayMs),
      });
      const expiredCa = await generateCertificateAuthority({
        commonName: "expired webhook CA",
        validityDays: 30,
        now: new Date(now - 31 * dayMs),
      });
      const serving = await issueServingCertificate(agingCa, {
        dnsNames,
        ipAddresses,
        validityDays: 90,
      });
      assert.equal(needsRenewal(serving.certPem), false, "capped at the CA's expiry, yet fresh");
      await plant(ns, {
        "ca.crt": agingCa.certPem,
        "ca.key": agingCa.keyPem,
        "ca-bundle.crt": agingCa.certPem + expiredCa.certPem,
        "tls.crt": serving.certPem,
        "tls.key": serving.keyPem,
      });

      const renewed = await replica(ns).ensure();
      const stored = await readSecretData(ns);
      assert.notEqual(stored["ca.crt"], agingCa.certPem, "a new CA");
      assert.equal(needsRenewal(stored["ca.crt"] ?? ""), false);
      assert.deepEqual(
        splitBundle(renewed.caBundlePem).map((cert) => cert.fingerprint256),
        [stored["ca.crt"], agingCa.certPem].map(
          (pem) => new X509Certificate(pem ?? "").fingerprint256,
        ),
        "bundle: the new CA, then the old one; the expired CA is gone",
      );
      // Clients still holding only the old CA keep trusting what is served.
      assert.equal(renewed.certPem, serving.certPem);
      assertSignedBy(renewed.certPem, agingCa.certPem);

      // The next serving certificate comes from the new CA; the old CA stays in the bundle.
      const expiring = await issueServingCertificate(agingCa, {
        dnsNames,
        ipAddresses,
        validityDays: 5,
        now: new Date(now - 4 * dayMs),
      });
      await plant(ns, { "tls.crt": expiring.certPem, "tls.key": expiring.keyPem });
      const reissued = await replica(ns).ensure();
      assertSignedBy(reissued.certPem, stored["ca.crt"] ?? "");
      assert.equal(reissued.caBundlePem, renewed.caBundlePem);
    } finally {
      await scratch.remove();
    }
  });
});
