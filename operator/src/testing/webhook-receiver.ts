// A real HTTPS webhook receiver on loopback with a CA of its own, for the approval notices'
// tests: it records each JSON body and answers with the statuses queued (then 200).
import { once } from "node:events";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import {
  type CertificateAuthority,
  generateCertificateAuthority,
  issueServingCertificate,
} from "../admission/webhook-certs.ts";
import type { ApprovalNotice } from "../notifications/approval-notices.ts";

export interface ReceivedNotice {
  path: string;
  contentType: string | undefined;
  /** What the receiver answered. */
  status: number;
  body: { text: string; langgraphJit: ApprovalNotice };
}

export class WebhookReceiver {
  readonly received: ReceivedNotice[] = [];
  /** Statuses for the next requests, in order; 200 once they run out. */
  readonly answers: number[] = [];
  /** Reads requests but never answers them. */
  hang = false;
  readonly ca: CertificateAuthority;
  readonly url: string;
  readonly #server: Server;

  private constructor(ca: CertificateAuthority, server: Server, url: string) {
    this.ca = ca;
    this.#server = server;
    this.url = url;
  }

  static async start(): Promise<WebhookReceiver> {
    const ca = await generateCertificateAuthority({ commonName: "receiver-ca", validityDays: 1 });
    const cert = await issueServingCertificate(ca, {
      dnsNames: [],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    let receiver: WebhookReceiver | undefined;
    const server = createServer({ cert: cert.certPem, key: cert.keyPem }, async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      if (!receiver || receiver.hang) return;
      const status = receiver.answers.shift() ?? 200;
      receiver.received.push({
        path: req.url ?? "",
        contentType: req.headers["content-type"],
        status,
        body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
      });
      res.writeHead(status).end("ok");
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    receiver = new WebhookReceiver(ca, server, `https://127.0.0.1:${port}/services/T0/B0/x`);
    return receiver;
  }

  /** The notices about one object that the receiver took (answered 200), in order. */
  noticesOf(name: string): ApprovalNotice[] {
    return this.received
      .filter((r) => r.status === 200 && r.body.langgraphJit.name === name)
      .map((r) => r.body.langgraphJit);
  }

  close(): void {
    this.#server.closeAllConnections();
    this.#server.close();
  }
}
