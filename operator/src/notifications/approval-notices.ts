// Tells people that something waits for their approval and how it was decided, through the
// HTTPS webhook a policy names (Slack-compatible JSON). Best effort by design: a notice is sent
// in the background, retried with backoff, and never delays, changes or fails a decision.
import { request } from "node:https";
import type { Logger } from "pino";
import { type Backoff, backoffDelay } from "../../../api/backoff.ts";
import { timerDelay } from "../../../api/timers.ts";
import { type AccessPolicy, apiVersion } from "../../../api/v1alpha1.ts";
import type { EventSink } from "../kube/events.ts";

export type NoticeState = "Waiting" | "Approved" | "Denied" | "Expired";

export interface ApprovalNotice {
  state: NoticeState;
  namespace: string;
  /** What is decided: the run itself, or one held command of it. */
  kind: "LangGraphRun" | "HeldCommand";
  name: string;
  run: string;
  requester: string;
  /** What waits: the run's reason, or the held command's connection and summary. */
  request: string;
  /** Who must decide while waiting; who decided and why once decided. */
  message: string;
}

export interface ApprovalNotifier {
  /** Sends the notice to the webhooks of the named policies; returns at once, never throws. */
  notify(policies: readonly string[], notice: ApprovalNotice): void;
}

/** The Secret keys a policy's webhook reads. */
export const webhookSecretKeys = { url: "url", ca: "ca.crt" } as const;

export interface WebhookNotifierOptions {
  policy: (namespace: string, name: string) => AccessPolicy | undefined;
  /** A Secret's decoded data, or undefined when it does not exist. */
  readSecret: (namespace: string, name: string) => Promise<Record<string, string> | undefined>;
  /** Where a notice that could not be delivered is reported (on its policy). */
  events: EventSink;
  logger: Logger;
  backoff?: Backoff;
  attempts?: number;
  timeoutMs?: number;
  /** Notices in flight at once; more are dropped (and logged) rather than queued without end. */
  maxInFlight?: number;
}

/** What a webhook answered when it did not take the notice. */
class DeliveryError extends Error {
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, retryable: boolean, retryAfterMs?: number) {
    super(message);
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
  }
}

const maxRequestText = 2_000;

export class WebhookNotifier implements ApprovalNotifier {
  readonly #options: Required<Omit<WebhookNotifierOptions, "backoff">> & { backoff: Backoff };
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: WebhookNotifierOptions) {
    this.#options = {
      backoff: { initialMs: 1_000, maxMs: 60_000 },
      attempts: 8,
      timeoutMs: 10_000,
      maxInFlight: 256,
      ...options,
    };
  }

  notify(policies: readonly string[], notice: ApprovalNotice): void {
    const targets = new Map<string, AccessPolicy>();
    for (const name of new Set(policies)) {
      const policy = this.#options.policy(notice.namespace, name);
      const secret = policy?.spec.notify?.webhook.secretRef.name;
      // Two policies naming one webhook hear of the notice once.
      if (policy && secret && !targets.has(secret)) targets.set(secret, policy);
    }
    for (const [secret, policy] of targets) {
      if (this.#inFlight.size >= this.#options.maxInFlight) {
        this.#options.logger.warn(
          { policy: name(policy), notice: notice.name },
          "too many approval notices in flight; dropped one",
        );
        continue;
      }
      const delivery = this.#deliver(policy, secret, notice).finally(() =>
        this.#inFlight.delete(delivery),
      );
      this.#inFlight.add(delivery);
    }
  }

  /** Resolves once every notice sent so far was delivered or given up on. */
  async drained(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  async #deliver(policy: AccessPolicy, secret: string, notice: ApprovalNotice): Promise<void> {
    const { attempts, backoff, logger } = this.#options;
    const log = logger.child({ policy: name(policy), secret, notice: notice.name });
    const body = JSON.stringify(slackMessage(notice));
    for (let attempt = 0; ; attempt++) {
      try {
        const target = await this.#target(policy.metadata?.namespace ?? "", secret);
        await post(target, body, this.#options.timeoutMs);
        log.debug({ state: notice.state }, "approval notice delivered");
        return;
      } catch (error) {
        const failure =
          error instanceof DeliveryError ? error : new DeliveryError(String(error), true);
        if (!failure.retryable || attempt + 1 >= attempts) {
          log.warn(
            { err: failure.message, attempts: attempt + 1 },
            "approval notice not delivered",
          );
          await this.#options.events.record(
            { apiVersion, kind: "AccessPolicy", metadata: policy.metadata },
            "Warning",
            "NotificationFailed",
            "Notify",
            `the ${notice.state} notice of ${notice.kind} ${notice.name} did not reach the webhook of Secret ${secret} after ${attempt + 1} attempt(s): ${failure.message}`,
          );
          return;
        }
        // A Retry-After is honoured up to the longest backoff, never beyond.
        const asked = Math.min(failure.retryAfterMs ?? 0, backoff.maxMs);
        await sleep(Math.max(backoffDelay(attempt, backoff), asked));
      }
    }
  }

  /** The webhook as its Secret says now (it may be fixed between attempts). */
  async #target(namespace: string, secret: string): Promise<WebhookTarget> {
    const data = await this.#options.readSecret(namespace, secret);
    if (!data) throw new DeliveryError(`Secret ${namespace}/${secret} does not exist`, true);
    const raw = data[webhookSecretKeys.url]?.trim();
    if (!raw) throw new DeliveryError(`Secret ${secret} has no key "url"`, false);
    const url = URL.canParse(raw) ? new URL(raw) : undefined;
    if (url?.protocol !== "https:") {
      throw new DeliveryError(`the key "url" of Secret ${secret} is not an https:// URL`, false);
    }
    const ca = data[webhookSecretKeys.ca];
    return { url, ...(ca ? { ca } : {}) };
  }
}

interface WebhookTarget {
  url: URL;
  ca?: string;
}

/** One POST; resolves on a 2xx answer, throws a DeliveryError saying whether to retry. */
function post(target: WebhookTarget, body: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      target.url,
      {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          "user-agent": "langgraph-jit-operator",
        },
        ...(target.ca ? { ca: target.ca } : {}),
        // The whole exchange, not only an idle socket: a receiver that trickles is cut off too.
        signal: AbortSignal.timeout(timeoutMs),
      },
      (response) => {
        // Only the status counts: the body is not read, and the socket goes with it.
        response.destroy();
        const status = response.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve();
        const retryAfter = Number(response.headers["retry-after"]);
        reject(
          new DeliveryError(
            `the webhook answered ${status}`,
            status === 408 || status === 429 || status >= 500,
            Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined,
          ),
        );
      },
    );
    // The code, not the message: a message names the host, which is part of the Secret.
    req.on("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.name === "AbortError"
          ? new DeliveryError(`no answer within ${timeoutMs} ms`, true)
          : new DeliveryError(`could not reach the webhook (${error.code ?? "no code"})`, true),
      ),
    );
    req.end(body);
  });
}

/**
 * Slack's incoming-webhook shape: `text` (mrkdwn, with what the requester and the graph wrote
 * escaped so that it cannot mention @channel or hide a link), plus the notice as data.
 */
export function slackMessage(notice: ApprovalNotice): {
  text: string;
  langgraphJit: ApprovalNotice;
} {
  const what = `${notice.kind} ${notice.namespace}/${notice.name}`;
  const request = slackEscape(cut(notice.request));
  const decide = `kubectl jit approve ${notice.name} -n ${notice.namespace} --reason ...`;
  const text =
    notice.state === "Waiting"
      ? `*${what}* waits for approval.\nRequested by ${slackEscape(notice.requester)} (run ${notice.run}): ${request}\n${slackEscape(notice.message)}\nDecide with \`${decide}\` or \`kubectl jit deny\`.`
      : `*${what}* ${notice.state.toLowerCase()}: ${slackEscape(notice.message)}\nRequested by ${slackEscape(notice.requester)} (run ${notice.run}): ${request}`;
  return { text, langgraphJit: { ...notice, request: cut(notice.request) } };
}

/** The three characters Slack's mrkdwn reads as control ("<!channel>", "<url|label>"). */
function slackEscape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function cut(text: string): string {
  return text.length > maxRequestText ? `${text.slice(0, maxRequestText)}…` : text;
}

function name(policy: AccessPolicy): string {
  return `${policy.metadata?.namespace}/${policy.metadata?.name}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, timerDelay(ms)).unref());
}
