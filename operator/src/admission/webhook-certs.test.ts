import "reflect-metadata";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { before, describe, it } from "node:test";
import * as x509 from "@peculiar/x509";
import {
  type CertificateAuthority,
  generateCertificateAuthority,
  issueServingCertificate,
  needsRenewal,
  type ServingCertificate,
} from "./webhook-certs.ts";

const dnsNames = ["lgjit-webhook.lgjit-system.svc", "lgjit-webhook.lgjit-system.svc.cluster.local"];
const ipAddresses = ["127.0.0.1", "::1"];
const dayMs = 24 * 60 * 60 * 1000;

describe("webhook certificates", () => {
  let ca: CertificateAuthority;
  let serving: ServingCertificate;
  before(async () => {
    ca = await generateCertificateAuthority({ commonName: "test webhook CA", validityDays: 365 });
    serving = await issueServingCertificate(ca, { dnsNames, ipAddresses, validityDays: 30 });
  });

  it("generates a CA that may sign certificates and nothing else", () => {
    const cert = new X509Certificate(ca.certPem);
    assert.equal(cert.ca, true);
    assert.equal(cert.subject, "CN=test webhook CA");
    assert.equal(cert.issuer, cert.subject);
    assert.ok(cert.verify(cert.publicKey), "the CA is self-signed");
    const parsed = new x509.X509Certificate(ca.certPem);
    const basicConstraints = parsed.getExtension(x509.BasicConstraintsExtension);
    assert.equal(basicConstraints?.ca, true);
    assert.equal(basicConstraints?.critical, true);
    const keyUsage = parsed.getExtension(x509.KeyUsagesExtension);
    assert.equal(keyUsage?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.equal(keyUsage?.critical, true);
    assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
  });

  it("issues a serving certificate that chains to the CA", () => {
    const cert = new X509Certificate(serving.certPem);
    const caCert = new X509Certificate(ca.certPem);
    assert.equal(cert.ca, false);
    assert.ok(cert.checkIssued(caCert), "issuer name and key identifier match the CA");
    assert.ok(cert.verify(caCert.publicKey), "signature verifies with the CA's public key");
    assert.match(serving.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  });

  it("names exactly the configured DNS names and IP addresses", () => {
    const cert = new X509Certificate(serving.certPem);
    assert.equal(
      cert.subjectAltName,
      "DNS:lgjit-webhook.lgjit-system.svc, DNS:lgjit-webhook.lgjit-system.svc.cluster.local, " +
        "IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
    );
    for (const name of dnsNames) assert.equal(cert.checkHost(name), name);
    assert.equal(cert.checkHost("other.lgjit-system.svc"), undefined);
    assert.equal(cert.checkIP("127.0.0.1"), "127.0.0.1");
  });

  it("is for server authentication only", () => {
    // node's keyUsage lists the extended key usages.
    assert.deepEqual(new X509Certificate(serving.certPem).keyUsage, [
      x509.ExtendedKeyUsage.serverAuth,
    ]);
    const parsed = new x509.X509Certificate(serving.certPem);
    assert.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.ca, false);
    assert.equal(
      parsed.getExtension(x509.KeyUsagesExtension)?.usages,
      x509.KeyUsageFlags.digitalSignature,
    );
  });

  it("never outlives the CA that signed it", async () => {
    const shortCa = await generateCertificateAuthority({ commonName: "short", validityDays: 10 });
    const long = await issueServingCertificate(shortCa, {
      dnsNames,
      ipAddresses,
      validityDays: 90,
    });
    assert.equal(
      new X509Certificate(long.certPem).validToDate.getTime(),
      new X509Certificate(shortCa.certPem).validToDate.getTime(),
    );
  });

  it("rejects an IP address that is not one", async () => {
    await assert.rejects(
      issueServingCertificate(ca, { dnsNames, ipAddresses: ["10.0.0.300"], validityDays: 1 }),
      /"10.0.0.300" is not an IP address/,
    );
  });

  it("needs renewal once less than a third of the validity remains", () => {
    const cert = new X509Certificate(serving.certPem);
    const notBefore = cert.validFromDate.getTime();
    const notAfter = cert.validToDate.getTime();
    const third = (notAfter - notBefore) / 3;
    assert.equal(needsRenewal(serving.certPem, new Date()), false, "fresh");
    assert.equal(needsRenewal(serving.certPem, new Date(notAfter - third - 1000)), false);
    assert.equal(needsRenewal(serving.certPem, new Date(notAfter - third + 1000)), true);
    assert.equal(needsRenewal(serving.certPem, new Date(notAfter - dayMs)), true, "near expiry");
    assert.equal(needsRenewal(serving.certPem, new Date(notAfter + dayMs)), true, "expired");
  });

  it("needs renewal when the PEM does not parse", () => {
    assert.equal(needsRenewal(""), true);
    assert.equal(
      needsRenewal("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
      true,
    );
  });

  it("completes a TLS handshake for a client that trusts the CA", async () => {
    await withServer(serving, async (port) => {
      const body = await get(port, ca.certPem, dnsNames[1] ?? "");
      assert.equal(body, "ok");
    });
  });

  it("completes a TLS handshake for a client whose bundle holds a newer CA first", async () => {
    const newer = await generateCertificateAuthority({ commonName: "newer CA", validityDays: 365 });
    await withServer(serving, async (port) => {
      assert.equal(await get(port, newer.certPem + ca.certPem, dnsNames[0] ?? ""), "ok");
    });
  });

  it("fails the handshake for a client that trusts another CA", async () => {
    const other = await generateCertificateAuthority({ commonName: "other CA", validityDays: 365 });
    await withServer(serving, async (port) => {
      await assert.rejects(get(port, other.certPem, dnsNames[0] ?? ""), (error: Error) => {
        assert.match(
          (error as NodeJS.ErrnoException).code ?? "",
          /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|CERT_SIGNATURE_FAILURE/,
        );
        return true;
      });
    });
  });

  it("fails the handshake for a name the certificate does not cover", async () => {
    await withServer(serving, async (port) => {
      await assert.rejects(get(port, ca.certPem, "evil.example.com"), {
        code: "ERR_TLS_CERT_ALTNAME_INVALID",
      });
    });
  });
});

async function withServer(
  serving: ServingCertificate,
  use: (port: number) => Promise<void>,
): Promise<void> {
  const server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (_, res) => {
    res.end("ok");
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    await use((server.address() as AddressInfo).port);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

function get(port: number, caPem: string, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = https.get(
      { host: "127.0.0.1", port, path: "/", ca: caPem, servername, agent: false },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.on("end", () => resolve(body));
        response.on("error", reject);
      },
    );
    request.on("error", reject);
  });
}
