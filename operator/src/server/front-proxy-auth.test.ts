// The session API believes X-Remote-* headers only over a TLS connection whose client
// certificate chains to the API server's front-proxy CA and names an allowed proxy. Real
// certificates (openssl) and a real TLS server; no header alone proves anything.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import {
  generateCertificateAuthority,
  issueServingCertificate,
} from "../admission/webhook-certs.ts";
import {
  authenticateProxied,
  parseRequestHeaderConfig,
  type RequestHeaderConfig,
} from "./front-proxy-auth.ts";
import { createApiServer } from "./https-server.ts";

const work = mkdtempSync(join(tmpdir(), "lgjit-front-proxy-"));
const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: work, stdio: "pipe" });
function authority(name: string): void {
  openssl(
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "1",
    "-subj",
    `/CN=${name}`,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  );
}
function client(name: string, commonName: string, ca: string): { cert: string; key: string } {
  openssl(
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-subj",
    `/CN=${commonName}`,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
  );
  openssl(
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-days",
    "1",
    "-out",
    `${name}.crt`,
    "-extfile",
    "ext.cnf",
  );
  return {
    cert: readFileSync(join(work, `${name}.crt`), "utf8"),
    key: readFileSync(join(work, `${name}.key`), "utf8"),
  };
}

describe("front-proxy authentication", () => {
  let port: number;
  let servingCa: string;
  let config: RequestHeaderConfig | undefined;
  let close: () => void;
  const certs: Record<string, { cert: string; key: string }> = {};

  before(async () => {
    execFileSync("sh", ["-c", "printf 'extendedKeyUsage=clientAuth\\n' > ext.cnf"], { cwd: work });
    authority("front-proxy-ca");
    authority("cluster-ca");
    certs.proxy = client("proxy", "front-proxy-client", "front-proxy-ca");
    certs.otherName = client("other-name", "not-the-proxy", "front-proxy-ca");
    certs.cluster = client("alice", "front-proxy-client", "cluster-ca");
    config = parseRequestHeaderConfig({
      "requestheader-client-ca-file": readFileSync(join(work, "front-proxy-ca.crt"), "utf8"),
      "requestheader-allowed-names": '["front-proxy-client"]',
      "requestheader-username-headers": '["X-Remote-User"]',
      "requestheader-group-headers": '["X-Remote-Group"]',
      "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    });
    const ca = await generateCertificateAuthority({ commonName: "serving", validityDays: 1 });
    servingCa = ca.certPem;
    const serving = await issueServingCertificate(ca, {
      dnsNames: [],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    const server = createApiServer({
      tls: { ...serving, clientCaPem: config?.caPem },
      logger: pino({ level: "silent" }),
      routes: {
        "/whoami": {
          method: "GET",
          handle: async (req) => ({ status: 200, body: authenticateProxied(req, config) }),
        },
      },
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
    close = () => server.close();
  });
  after(() => {
    close();
    rmSync(work, { recursive: true, force: true });
  });

  function whoami(
    tls: { cert?: string; key?: string },
    headers: Record<string, string | string[]>,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    return new Promise((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, path: "/whoami", ca: servingCa, ...tls, headers, agent: false },
        (response) => {
          let text = "";
          response.on("data", (chunk: Buffer) => {
            text += chunk.toString();
          });
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }),
          );
        },
      );
      req.on("error", reject);
      req.end();
    });
  }
  const claim = {
    "x-remote-user": "alice@example.com",
    "x-remote-group": ["ml-platform", "system:authenticated"],
    "x-remote-extra-scopes": ["read", "write"],
    "x-remote-extra-acme.com%2fproject": "kb",
  };

  it("takes the user, groups and extras the front proxy names", async () => {
    const answer = await whoami(certs.proxy ?? {}, claim);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body, {
      username: "alice@example.com",
      groups: ["ml-platform", "system:authenticated"],
      extra: { scopes: ["read", "write"], "acme.com/project": ["kb"] },
    });
  });

  it("refuses headers without a certificate, or with one from another CA or for another name", async () => {
    for (const [tls, why] of [
      [{}, /no front-proxy client certificate/],
      [certs.cluster, /no front-proxy client certificate/],
      [certs.otherName, /CN not-the-proxy\) is not an allowed proxy/],
    ] as const) {
      const answer = await whoami(tls ?? {}, claim);
      assert.equal(answer.status, 401);
      assert.match(String(answer.body.error), why);
    }
  });

  it("refuses a proxied request that names nobody, and everything when the CA is unknown", async () => {
    const nobody = await whoami(certs.proxy ?? {}, { "x-remote-group": "system:masters" });
    assert.equal(nobody.status, 401);
    assert.match(String(nobody.body.error), /named no user/);
    const known = config;
    config = undefined;
    try {
      const answer = await whoami(certs.proxy ?? {}, claim);
      assert.equal(answer.status, 401);
      assert.match(String(answer.body.error), /front-proxy CA is not known/);
    } finally {
      config = known;
    }
  });
});
