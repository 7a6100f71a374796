// Approval notices against a real HTTPS receiver on loopback, with its own CA: what reaches it,
// what is retried, what is refused before anything is sent, and what is told on the policy.
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import pino from "pino";
import type { AccessPolicy } from "../../../api/v1alpha1.ts";
import { generateCertificateAuthority } from "../admission/webhook-certs.ts";
import { FakeCluster } from "../testing/fake-cluster.ts";
import { WebhookReceiver } from "../testing/webhook-receiver.ts";
import { type ApprovalNotice, slackMessage, WebhookNotifier } from "./approval-notices.ts";

const namespace = "agents";
const notice: ApprovalNotice = {
  state: "Waiting",
  namespace,
  kind: "HeldCommand",
  name: "needs-bob-write-x7k2p",
  run: "needs-bob",
  requester: "alice@example.com",
  request: "kb-api: POST /v1/documents <!channel> <https://evil.example|click>",
  message: "waiting for 1 of Group security",
};

function policy(name: string, secret?: string): AccessPolicy {
  return {
    metadata: { namespace, name, uid: `uid-${name}` },
    spec: {
      subjects: [{ kind: "Group", name: "ml-platform" }],
      maxDuration: "1h",
      grants: [{ connection: "kb-api", actions: ["read"] }],
      ...(secret ? { notify: { webhook: { secretRef: { name: secret } } } } : {}),
    },
  };
}

describe("approval notices", () => {
  let receiver: WebhookReceiver;
  let url: string;
  let cluster: FakeCluster;
  let secrets: Map<string, Record<string, string>>;
  let secretReads: number;

  const notifier = (attempts = 3) =>
    new WebhookNotifier({
      policy: (ns, name) => cluster.policies.get(ns, name),
      readSecret: async (ns, name) => {
        secretReads++;
        return secrets.get(`${ns}/${name}`);
      },
      events: cluster.eventSink,
      logger: pino({ level: "silent" }),
      backoff: { initialMs: 5, maxMs: 20 },
      attempts,
      timeoutMs: 500,
    });

  before(async () => {
    receiver = await WebhookReceiver.start();
    url = receiver.url;
  });
  after(() => receiver.close());
  beforeEach(() => {
    receiver.received.length = 0;
    receiver.answers.length = 0;
    receiver.hang = false;
    cluster = new FakeCluster();
    cluster.policies.put(policy("kb-writers", "approvals-webhook"));
    secrets = new Map([[`${namespace}/approvals-webhook`, { url, "ca.crt": receiver.ca.certPem }]]);
    secretReads = 0;
  });

  it("posts Slack-compatible JSON to the policy's webhook, trusting the Secret's CA", async () => {
    const sender = notifier();
    sender.notify(["kb-writers"], notice);
    await sender.drained();
    assert.equal(receiver.received.length, 1);
    const [got] = receiver.received;
    assert.equal(got?.path, "/services/T0/B0/x");
    assert.equal(got?.contentType, "application/json");
    assert.deepEqual(got?.body.langgraphJit, notice);
    assert.match(got?.body.text ?? "", /^\*HeldCommand agents\/needs-bob-write-x7k2p\* waits/);
    assert.match(got?.body.text ?? "", /kubectl jit approve needs-bob-write-x7k2p -n agents/);
    assert.deepEqual(cluster.events, []);
  });

  it("escapes what the requester and the graph wrote, so it cannot ping a channel or hide a link", () => {
    const { text } = slackMessage(notice);
    assert.doesNotMatch(text, /<!channel>|<https:/);
    assert.match(text, /&lt;!channel&gt; &lt;https:\/\/evil.example\|click&gt;/);
    const decided = slackMessage({ ...notice, state: "Denied", message: "denied by <@U1>" });
    assert.match(decided.text, /\* denied: denied by &lt;@U1&gt;/);
  });

  it("retries a webhook that fails or asks to wait, and delivers once", async () => {
    receiver.answers.push(503, 429);
    const sender = notifier(5);
    sender.notify(["kb-writers"], { ...notice, state: "Approved", message: "approved by bob" });
    await sender.drained();
    assert.equal(receiver.received.length, 3, "two refusals, then the delivery");
    assert.deepEqual(cluster.events, []);
  });

  it("gives up on a webhook that refuses the notice, and says so on the policy", async () => {
    receiver.answers.push(404);
    const sender = notifier(5);
    sender.notify(["kb-writers"], notice);
    await sender.drained();
    assert.equal(receiver.received.length, 1, "a 404 is not retried");
    assert.equal(cluster.events.length, 1);
    const [event] = cluster.events;
    assert.equal(event?.kind, "AccessPolicy");
    assert.equal(event?.name, "kb-writers");
    assert.equal(event?.type, "Warning");
    assert.equal(event?.reason, "NotificationFailed");
    assert.match(
      event?.note ?? "",
      /Waiting notice of HeldCommand needs-bob-write-x7k2p .* answered 404/,
    );
  });

  it("does not trust a receiver its Secret's CA did not sign", async () => {
    const other = await generateCertificateAuthority({ commonName: "other", validityDays: 1 });
    secrets.set(`${namespace}/approvals-webhook`, { url, "ca.crt": other.certPem });
    const sender = notifier(2);
    sender.notify(["kb-writers"], notice);
    await sender.drained();
    assert.equal(receiver.received.length, 0);
    assert.match(
      cluster.events[0]?.note ?? "",
      /after 2 attempt\(s\): could not reach the webhook \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)$/,
    );
    assert.doesNotMatch(
      cluster.events[0]?.note ?? "",
      /127\.0\.0\.1/,
      "the Secret's host is not told",
    );
  });

  it("sends nothing to a URL that is not https, nor without one", async () => {
    const bad: Record<string, string>[] = [
      { url: url.replace("https:", "http:") },
      { url: "x" },
      {},
    ];
    for (const data of bad) {
      secrets.set(`${namespace}/approvals-webhook`, data);
      const sender = notifier(5);
      sender.notify(["kb-writers"], notice);
      await sender.drained();
    }
    assert.equal(receiver.received.length, 0);
    assert.equal(secretReads, 3, "a bad URL is not retried");
    assert.deepEqual(
      cluster.events.map((e) => e.note.replace(/.*: /, "")),
      [
        'the key "url" of Secret approvals-webhook is not an https:// URL',
        'the key "url" of Secret approvals-webhook is not an https:// URL',
        'Secret approvals-webhook has no key "url"',
      ],
    );
  });

  it("retries while the Secret is missing, and delivers once it exists", async () => {
    const data = secrets.get(`${namespace}/approvals-webhook`) ?? {};
    secrets.clear();
    const sender = notifier(4);
    sender.notify(["kb-writers"], notice);
    secrets.set(`${namespace}/approvals-webhook`, data);
    await sender.drained();
    assert.equal(receiver.received.length, 1);
    assert.ok(secretReads >= 2);
  });

  it("times out a receiver that never answers", async () => {
    receiver.hang = true;
    const sender = notifier(2);
    sender.notify(["kb-writers"], notice);
    await sender.drained();
    assert.match(cluster.events[0]?.note ?? "", /no answer within 500 ms/);
  });

  it("tells each webhook once, and nobody for a policy without one", async () => {
    cluster.policies.put(policy("kb-admins", "approvals-webhook"));
    cluster.policies.put(policy("quiet"));
    const sender = notifier();
    sender.notify(["kb-writers", "kb-admins", "quiet", "gone", "kb-writers"], notice);
    await sender.drained();
    assert.equal(receiver.received.length, 1);
    sender.notify(["quiet", "gone"], notice);
    await sender.drained();
    assert.equal(receiver.received.length, 1);
    assert.equal(secretReads, 1);
  });
});
