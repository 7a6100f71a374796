// The pod CA's certificates hold up under the verifiers the graph container uses: Node's TLS
// client, openssl's strict mode and Python's VERIFY_X509_STRICT; its private key stays out of
// reach, and bad hosts are refused by name.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createNetServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  type ConnectionOptions,
  connect,
  createServer,
  rootCertificates,
  TLSSocket,
  type TlsOptions,
} from "node:tls";
import { promisify } from "node:util";
import { createPodCa, type PodCa, trustBundle } from "./pod-ca.ts";

const run = promisify(execFile);
const minuteMs = 60_000;
const dayMs = 24 * 60 * minuteMs;

let ca: PodCa;
let directory: string;
let caFile: string;
/** Presents, for each SNI name, the pod CA's certificate for it. */
let sniPort: number;
const servers: Server[] = [];

before(async () => {
  ca = createPodCa({ name: "run-abc" });
  directory = await mkdtemp(join(tmpdir(), "lgjit-pod-ca-"));
  caFile = join(directory, "ca.pem");
  await writeFile(caFile, ca.certificatePem);
  sniPort = await serveTls({
    SNICallback: (servername, done) => {
      try {
        done(null, ca.secureContextFor(servername));
      } catch (error) {
        done(error as Error);
      }
    },
  });
});

after(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  await rm(directory, { recursive: true, force: true });
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address && typeof address === "object");
  return address.port;
}

function serveTls(options: TlsOptions): Promise<number> {
  return listen(createServer(options, (socket) => socket.end()));
}

/** Terminates TLS for host on plain accepted sockets, as the CONNECT interception will. */
function serveHost(host: string, from: PodCa = ca): Promise<number> {
  const secureContext = from.secureContextFor(host);
  return listen(
    createNetServer((raw) => {
      const socket = new TLSSocket(raw, { isServer: true, secureContext });
      socket.on("secure", () => socket.end());
      socket.on("error", () => raw.destroy()); // a client refusing the certificate is expected
    }),
  );
}

/** Completes a handshake and returns what the server presented and whether it was trusted. */
function handshake(
  port: number,
  options: ConnectionOptions,
): Promise<{ leaf: X509Certificate; authorized: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", ...options }, () => {
      const leaf = socket.getPeerX509Certificate();
      socket.end();
      if (leaf === undefined) reject(new Error("the server presented no certificate"));
      else resolve({ leaf, authorized: socket.authorized });
    });
    socket.on("error", reject);
  });
}

/** The leaf the pod CA issues for host, fetched the way a client sees it. */
async function leafFor(host: string, from: PodCa = ca): Promise<X509Certificate> {
  const port = await serveHost(host, from);
  const { leaf } = await handshake(port, {
    ca: from.certificatePem,
    checkServerIdentity: () => undefined, // identity is what these tests check themselves
  });
  return leaf;
}

async function writeTemp(name: string, text: string): Promise<string> {
  const path = join(directory, name);
  await writeFile(path, text);
  return path;
}

function openssl(...args: string[]): string {
  return execFileSync("/usr/bin/openssl", args, { encoding: "utf8", stdio: "pipe" });
}

function opensslText(pem: string): string {
  return execFileSync("/usr/bin/openssl", ["x509", "-noout", "-text"], {
    input: pem,
    encoding: "utf8",
  });
}

test("issues a self-signed CA certificate that may sign only leaves", () => {
  const certificate = new X509Certificate(ca.certificatePem);
  assert.equal(certificate.ca, true);
  assert.equal(certificate.subject, "CN=langgraph-jit pod CA run-abc");
  assert.equal(certificate.issuer, certificate.subject);
  assert.equal(certificate.verify(certificate.publicKey), true);
  assert.equal(certificate.publicKey.asymmetricKeyType, "ec");
  assert.equal(certificate.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");

  const text = opensslText(ca.certificatePem);
  assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  assert.match(text, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
  assert.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
  assert.match(text, /Subject Key Identifier: \s*\n\s+[0-9A-F]{2}(:[0-9A-F]{2}){19}\n/);
  assert.doesNotMatch(text, /Authority Key Identifier/);
});

test("dates the CA from five minutes back to the end of its lifetime", () => {
  const now = new Date("2026-03-01T12:00:00.750Z");
  const shortLived = createPodCa({ now, lifetimeMs: 60 * minuteMs });
  const certificate = new X509Certificate(shortLived.certificatePem);
  assert.equal(certificate.validFromDate.toISOString(), "2026-03-01T11:55:00.000Z");
  assert.equal(certificate.validToDate.toISOString(), "2026-03-01T13:00:00.000Z");
  assert.equal(certificate.subject, "CN=langgraph-jit pod CA");
});

test("outlives the longest run by default", () => {
  const certificate = new X509Certificate(ca.certificatePem);
  const lifetimeMs = certificate.validToDate.getTime() - Date.now();
  assert.ok(lifetimeMs > 7 * dayMs, `the CA expires in ${lifetimeMs} ms, within 168h`);
  assert.ok(lifetimeMs <= 8 * dayMs);
});

test("issues a leaf for a DNS name that openssl verifies strictly as a TLS server", async () => {
  const leaf = await leafFor("kb-api.agents.svc");
  const leafFile = await writeTemp("kb-api.pem", leaf.toString());
  const verified = openssl(
    "verify",
    "-x509_strict",
    "-purpose",
    "sslserver",
    "-verify_hostname",
    "kb-api.agents.svc",
    "-CAfile",
    caFile,
    leafFile,
  );
  assert.equal(verified.trim(), `${leafFile}: OK`);

  assert.equal(leaf.subject, "CN=kb-api.agents.svc");
  assert.equal(leaf.ca, false);
  assert.equal(leaf.checkHost("kb-api.agents.svc"), "kb-api.agents.svc");
  assert.equal(leaf.checkHost("other.agents.svc"), undefined);
  assert.equal(leaf.checkIssued(new X509Certificate(ca.certificatePem)), true);
  assert.deepEqual(leaf.keyUsage, ["1.3.6.1.5.5.7.3.1"]); // extKeyUsage: serverAuth only
});

test("gives a leaf the extensions strict verifiers require", async () => {
  const leaf = await leafFor("kb-api.agents.svc");
  const text = opensslText(leaf.toString());
  assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
  assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
  assert.match(text, /Extended Key Usage: \s*\n\s+TLS Web Server Authentication\n/);
  assert.match(text, /Subject Alternative Name: \s*\n\s+DNS:kb-api.agents.svc\n/);

  const caKeyId = /Subject Key Identifier: \s*\n\s+(\S+)/.exec(opensslText(ca.certificatePem));
  const leafKeyId = /Subject Key Identifier: \s*\n\s+(\S+)/.exec(text);
  const authorityKeyId = /Authority Key Identifier: \s*\n\s+(?:keyid:)?(\S+)/.exec(text);
  assert.ok(caKeyId?.[1] && leafKeyId?.[1] && authorityKeyId?.[1]);
  assert.equal(authorityKeyId[1], caKeyId[1]);
  assert.notEqual(leafKeyId[1], caKeyId[1]);
});

test("gives each leaf a random positive 16-octet serial, valid within the CA", async () => {
  const authority = new X509Certificate(ca.certificatePem);
  const first = await leafFor("a.agents.svc");
  const second = await leafFor("b.agents.svc");
  for (const leaf of [first, second]) {
    assert.match(leaf.serialNumber, /^[4-7][0-9A-F]{31}$/);
    assert.ok(leaf.validFromDate >= authority.validFromDate);
    assert.ok(leaf.validFromDate <= new Date());
    assert.equal(leaf.validToDate.getTime(), authority.validToDate.getTime());
  }
  assert.notEqual(first.serialNumber, second.serialNumber);
});

test("names an IPv4 literal as an iPAddress entry", async () => {
  const leaf = await leafFor("10.96.0.12");
  assert.equal(leaf.checkIP("10.96.0.12"), "10.96.0.12");
  assert.equal(leaf.checkIP("10.96.0.13"), undefined);
  assert.equal(leaf.subject, "CN=10.96.0.12");
  assert.match(
    opensslText(leaf.toString()),
    /Subject Alternative Name: \s*\n\s+IP Address:10.96.0.12\n/,
  );
  const leafFile = await writeTemp("ipv4.pem", leaf.toString());
  openssl(
    "verify",
    "-x509_strict",
    "-purpose",
    "sslserver",
    "-verify_ip",
    "10.96.0.12",
    "-CAfile",
    caFile,
    leafFile,
  );
});

test("names an IPv6 literal as an iPAddress entry, with or without brackets", async () => {
  const leaf = await leafFor("::1");
  assert.equal(leaf.checkIP("::1"), "::1");
  assert.equal(leaf.checkIP("0:0:0:0:0:0:0:1"), "0:0:0:0:0:0:0:1");
  assert.equal(leaf.checkIP("::2"), undefined);
  const mapped = await leafFor("[2001:db8::ffff:10.96.0.12]");
  assert.equal(mapped.checkIP("2001:db8::ffff:a60:c"), "2001:db8::ffff:a60:c");
  const leafFile = await writeTemp("ipv6.pem", leaf.toString());
  openssl(
    "verify",
    "-x509_strict",
    "-purpose",
    "sslserver",
    "-verify_ip",
    "::1",
    "-CAfile",
    caFile,
    leafFile,
  );
});

test("leaves the commonName out, and marks the names critical, for a host too long for one", async () => {
  const host = `${"a".repeat(60)}.agents.svc`;
  const leaf = await leafFor(host);
  assert.equal(leaf.checkHost(host), host);
  const text = opensslText(leaf.toString());
  assert.match(text, /Subject: *\n/);
  assert.match(text, /Subject Alternative Name: critical\s+DNS:a{60}\.agents\.svc\n/);
  const leafFile = await writeTemp("long.pem", leaf.toString());
  openssl(
    "verify",
    "-x509_strict",
    "-purpose",
    "sslserver",
    "-verify_hostname",
    host,
    "-CAfile",
    caFile,
    leafFile,
  );
});

test("completes a TLS handshake for a client that trusts the pod CA", async () => {
  const { leaf, authorized } = await handshake(sniPort, {
    servername: "kb-api.agents.svc",
    ca: ca.certificatePem,
  });
  assert.equal(authorized, true);
  assert.equal(leaf.subject, "CN=kb-api.agents.svc");
});

test("fails the handshake for a client that trusts another pod's CA", async () => {
  const other = createPodCa({ name: "run-other" });
  await assert.rejects(
    handshake(sniPort, { servername: "kb-api.agents.svc", ca: other.certificatePem }),
    { code: "SELF_SIGNED_CERT_IN_CHAIN" }, // the chain ends in a CA the client does not hold
  );
});

test("fails the handshake for a host the certificate does not name", async () => {
  const port = await serveHost("kb-api.agents.svc");
  await assert.rejects(
    handshake(port, { servername: "billing.agents.svc", ca: ca.certificatePem }),
    { code: "ERR_TLS_CERT_ALTNAME_INVALID" },
  );
});

test("passes Python's VERIFY_X509_STRICT with the trust bundle as its CA file", async () => {
  const bundleFile = await writeTemp("bundle.pem", trustBundle(ca));
  const otherFile = await writeTemp("other.pem", trustBundle(createPodCa()));
  // One interpreter for both checks: starting Python costs more than the handshakes.
  const script = [
    "import socket, ssl, sys",
    "port, host = int(sys.argv[1]), sys.argv[2]",
    "for cafile in sys.argv[3:]:",
    "    context = ssl.create_default_context(cafile=cafile)",
    "    context.verify_flags |= ssl.VERIFY_X509_STRICT",
    "    try:",
    "        with socket.create_connection(('127.0.0.1', port)) as raw:",
    "            with context.wrap_socket(raw, server_hostname=host) as tls:",
    "                print('verified', dict(x[0] for x in tls.getpeercert()['subject']))",
    "    except ssl.SSLCertVerificationError as error:",
    "        print('refused', error.verify_message)",
  ].join("\n");
  const { stdout } = await run("python3", [
    "-c",
    script,
    String(sniPort),
    "kb-api.agents.svc",
    bundleFile,
    otherFile,
  ]);
  assert.deepEqual(stdout.trim().split("\n"), [
    "verified {'commonName': 'kb-api.agents.svc'}",
    "refused self-signed certificate in certificate chain",
  ]);
});

test("gives each pod CA its own key", async () => {
  const other = createPodCa({ name: "run-abc" });
  const mine = new X509Certificate(ca.certificatePem);
  const theirs = new X509Certificate(other.certificatePem);
  assert.notDeepEqual(
    mine.publicKey.export({ format: "jwk" }),
    theirs.publicKey.export({ format: "jwk" }),
  );
  const theirLeaf = await leafFor("kb-api.agents.svc", other);
  assert.equal(theirLeaf.verify(theirs.publicKey), true);
  assert.equal(theirLeaf.verify(mine.publicKey), false);
});

test("reuses one context per host, whatever its case", () => {
  const context = ca.secureContextFor("kb-api.agents.svc");
  assert.equal(ca.secureContextFor("KB-API.Agents.SVC"), context);
  assert.notEqual(ca.secureContextFor("billing.agents.svc"), context);
});

test("keeps the contexts of the 64 hosts a run may be granted, dropping the oldest beyond", () => {
  const fresh = createPodCa();
  const contexts = Array.from({ length: 64 }, (_, index) =>
    fresh.secureContextFor(`host-${index}.agents.svc`),
  );
  contexts.forEach((context, index) => {
    assert.equal(fresh.secureContextFor(`host-${index}.agents.svc`), context);
  });
  fresh.secureContextFor("host-64.agents.svc");
  assert.notEqual(fresh.secureContextFor("host-0.agents.svc"), contexts[0]);
  assert.equal(fresh.secureContextFor("host-63.agents.svc"), contexts[63]);
});

test("exposes the CA's certificate but never its private key", () => {
  assert.deepEqual(Object.keys(ca).sort(), ["certificatePem", "secureContextFor"]);
  assert.equal(Object.isFrozen(ca), true);
  assert.doesNotMatch(JSON.stringify(ca), /PRIVATE KEY/);
  assert.doesNotMatch(ca.certificatePem, /PRIVATE KEY/);
  assert.doesNotMatch(trustBundle(ca), /PRIVATE KEY/);
  assert.equal(typeof ca.certificatePem, "string");
});

test("refuses, naming it, a host that is neither a DNS name nor an IP address", () => {
  for (const host of [
    "",
    "kb api.agents.svc",
    "kb-api/agents",
    "kb-api\u0000.agents.svc",
    "kb-api.agents.svc\r\nx-injected: 1",
    "*.agents.svc",
    "-kb-api.agents.svc",
    "kb-api..agents.svc",
    `${"a".repeat(64)}.agents.svc`,
    "fe80::1%eth0",
    "[kb-api.agents.svc]",
    "bücher.example",
  ]) {
    assert.throws(() => ca.secureContextFor(host), {
      message: `cannot issue a certificate for host ${JSON.stringify(host)}: it is neither a DNS name nor an IP address`,
    });
  }
});

test("refuses a lifetime that is not a positive duration", () => {
  assert.throws(
    () => createPodCa({ lifetimeMs: 0 }),
    /lifetime must be a positive number of ms, not 0/,
  );
  assert.throws(() => createPodCa({ lifetimeMs: Number.NaN }), /not NaN/);
});

test("writes a trust bundle of the pod CA followed by the public roots", () => {
  const bundle = trustBundle(ca);
  assert.ok(bundle.startsWith(ca.certificatePem));
  const certificates = bundle.match(/-----BEGIN CERTIFICATE-----/g) ?? [];
  assert.equal(certificates.length, 1 + rootCertificates.length);
  assert.ok(rootCertificates.length > 100);
  assert.ok(bundle.includes(rootCertificates[0] ?? "missing"));
  assert.ok(bundle.endsWith("-----END CERTIFICATE-----\n"));
});
