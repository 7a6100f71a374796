// The admission endpoint over real HTTPS: correct AdmissionReview answers, and malformed
// requests refused with a clear status while the server keeps serving (invariant 7).
import assert from "node:assert/strict";
import { request } from "node:https";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { StatusSeal } from "../runs/status-seal.ts";
import { createApiServer } from "../server/https-server.ts";
import { createMetrics } from "../server/metrics.ts";
import { offered } from "../testing/connections.ts";
import { generateCertificateAuthority, issueServingCertificate } from "./webhook-certs.ts";
import { webhookPaths } from "./webhook-configurations.ts";
import { admissionRoutes } from "./webhook-server.ts";

const alice = { username: "alice@example.com", uid: "a-1", groups: ["ml-platform"] };

function review(annotations?: Record<string, string>) {
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "req-7",
      kind: { group: "langgraph-jit.dev", version: "v1alpha1", kind: "LangGraphRun" },
      resource: { group: "langgraph-jit.dev", version: "v1alpha1", resource: "langgraphruns" },
      operation: "CREATE",
      userInfo: alice,
      object: {
        metadata: { name: "r", namespace: "agents", ...(annotations ? { annotations } : {}) },
        spec: {
          template: { spec: { containers: [{ name: "graph" }] } },
          access: [],
          maxDuration: "30m",
        },
      },
    },
  };
}

describe("admission webhook server", () => {
  const metrics = createMetrics();
  let ca: string;
  let port: number;
  let close: () => void;

  before(async () => {
    const authority = await generateCertificateAuthority({
      commonName: "test-ca",
      validityDays: 1,
    });
    const serving = await issueServingCertificate(authority, {
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    ca = authority.certPem;
    const logger = pino({ level: "silent" });
    const server = createApiServer({
      tls: serving,
      routes: admissionRoutes({
        runs: {
          policies: () => [],
          connections: () => [],
          templateReview: {
            rules: { sidecarUid: 17337, capture: false },
            requesterMay: async () => false,
          },
          taggedPod: () => undefined,
          operatorUsername: "system:serviceaccount:lgjit:operator",
        },
        approvals: {
          run: () => undefined,
          heldCommand: () => undefined,
          seal: new StatusSeal(Buffer.alloc(32, 9)),
          approvals: () => [],
          policies: () => [],
          connections: () => offered(),
        },
        policies: { connections: () => offered(), clusterConnection: () => undefined },
        podConnect: { pod: async () => undefined },
        operatorUsername: "system:serviceaccount:lgjit:operator",
        logger,
        metrics,
      }),
      logger,
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
    close = () => server.close();
  });
  after(() => close());

  function send(
    path: string,
    body: string | Buffer,
    method = "POST",
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const call = request(
        {
          host: "127.0.0.1",
          port,
          path,
          method,
          ca,
          headers: { "content-type": "application/json" },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
          );
        },
      );
      call.on("error", reject);
      call.end(body);
    });
  }

  it("answers a review with the request's uid and the requester patch", async () => {
    const { status, body } = await send(webhookPaths.mutateRun, JSON.stringify(review()));
    assert.equal(status, 200);
    const answer = JSON.parse(body);
    assert.equal(answer.kind, "AdmissionReview");
    assert.equal(answer.response.uid, "req-7");
    assert.equal(answer.response.allowed, true);
    const patch = JSON.parse(Buffer.from(answer.response.patch, "base64").toString());
    assert.deepEqual(JSON.parse(patch[0].value["langgraph-jit.dev/requester"]), alice);
  });

  it("denies a forged requester and counts the decision", async () => {
    const forged = review({
      "langgraph-jit.dev/requester": JSON.stringify({ username: "bob@example.com" }),
    });
    const { body } = await send(webhookPaths.mutateRun, JSON.stringify(forged));
    const answer = JSON.parse(body);
    assert.equal(answer.response.allowed, false);
    assert.equal(answer.response.status.code, 403);
    const counted = await metrics.webhookDecisions.get();
    assert.ok(counted.values.some((v) => v.labels.decision === "denied" && v.value >= 1));
  });

  it("refuses ephemeral containers in a run's or a tagged pod, and only there", async () => {
    const ephemeral = (labels: Record<string, string>) =>
      JSON.stringify({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        request: {
          uid: "req-8",
          kind: { group: "", version: "v1", kind: "Pod" },
          resource: { group: "", version: "v1", resource: "pods" },
          subResource: "ephemeralcontainers",
          namespace: "agents",
          name: "kb-refresh-x7k2p",
          operation: "UPDATE",
          userInfo: alice,
          object: { metadata: { name: "kb-refresh-x7k2p", labels } },
          oldObject: { metadata: { name: "kb-refresh-x7k2p", labels } },
        },
      });
    const path = webhookPaths.validateEphemeralContainers;
    const refused = JSON.parse(
      (await send(path, ephemeral({ "langgraph-jit.dev/run": "r" }))).body,
    );
    assert.equal(refused.response.allowed, false);
    assert.match(
      refused.response.status.message,
      /belongs to a LangGraphRun: its pod takes no ephemeral containers/,
    );
    const tagged = JSON.parse(
      (await send(path, ephemeral({ "langgraph-jit.dev/inject": "true" }))).body,
    );
    assert.equal(tagged.response.allowed, false, "a tagged pod's sidecar holds a credential too");
    const other = JSON.parse((await send(path, ephemeral({ app: "web" }))).body);
    assert.equal(other.response.allowed, true);
  });

  it("refuses malformed requests with a clear status and keeps serving", async () => {
    const notJson = await send(webhookPaths.validateRun, "{not json");
    assert.deepEqual([notJson.status, JSON.parse(notJson.body).error], [400, "body is not JSON"]);
    const notReview = await send(webhookPaths.validateRun, JSON.stringify({ kind: "Pod" }));
    assert.equal(notReview.status, 400);
    assert.match(JSON.parse(notReview.body).error, /not an admission\.k8s\.io\/v1 AdmissionReview/);
    const tooLarge = await send(webhookPaths.validateRun, Buffer.alloc(3 * 1024 * 1024 + 1, 32));
    assert.equal(tooLarge.status, 413);
    assert.equal((await send(webhookPaths.validateRun, "", "GET")).status, 405);
    assert.equal((await send("/admission/elsewhere", "{}")).status, 404);
    const still = await send(
      webhookPaths.validateRun,
      JSON.stringify(review({ "langgraph-jit.dev/requester": JSON.stringify(alice) })),
    );
    assert.equal(JSON.parse(still.body).response.allowed, true);
  });
});
