// The operator's HTTPS server answers every request, however malformed, and keeps serving.
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { connect } from "node:tls";
import { pino } from "pino";
import {
  generateCertificateAuthority,
  issueServingCertificate,
} from "../admission/webhook-certs.ts";
import { createApiServer, HttpError } from "./https-server.ts";

describe("the operator's HTTPS server", () => {
  let ca: string;
  let port: number;
  let close: () => void;

  before(async () => {
    const authority = await generateCertificateAuthority({ commonName: "test", validityDays: 1 });
    const serving = await issueServingCertificate(authority, {
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    ca = authority.certPem;
    const server = createApiServer({
      tls: serving,
      logger: pino({ level: "silent" }),
      routes: {
        "/ok": { method: "GET", handle: async () => ({ status: 200, body: { ok: true } }) },
        "/refuse": {
          method: "GET",
          handle: async () => {
            throw new HttpError(403, "NotARunPod", "no");
          },
        },
        "/broken": {
          method: "GET",
          handle: async () => {
            throw new TypeError("a bug");
          },
        },
      },
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
    close = () => server.close();
  });
  after(() => close());

  /** Sends raw request bytes over TLS; resolves with the status line. */
  function raw(requestLine: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () =>
        socket.end(`${requestLine}\r\nHost: localhost\r\nConnection: close\r\n\r\n`),
      );
      let answer = "";
      socket.on("data", (chunk: Buffer) => {
        answer += chunk.toString();
      });
      socket.on("end", () => resolve(answer.split("\r\n")[0] ?? ""));
      socket.on("error", reject);
    });
  }

  it("answers an unparseable request target with 400 and keeps serving", async () => {
    assert.equal(await raw("GET http://[::1 HTTP/1.1"), "HTTP/1.1 400 Bad Request");
    assert.equal(await raw("GET /ok HTTP/1.1"), "HTTP/1.1 200 OK");
  });

  it("answers refusals with their status, bugs with 500, and unknown paths with 404", async () => {
    assert.equal(await raw("GET /refuse HTTP/1.1"), "HTTP/1.1 403 Forbidden");
    assert.equal(await raw("GET /broken HTTP/1.1"), "HTTP/1.1 500 Internal Server Error");
    assert.equal(await raw("GET /elsewhere HTTP/1.1"), "HTTP/1.1 404 Not Found");
    assert.equal(await raw("POST /ok HTTP/1.1"), "HTTP/1.1 405 Method Not Allowed");
    assert.equal(await raw("GET /ok HTTP/1.1"), "HTTP/1.1 200 OK");
  });
});
