// The sessions API reads a run's stored events only for a reader the API server authenticated and
// its authorizer allows, and pages through them in sequence order.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import type { AuthorizationV1Api, V1SubjectAccessReview } from "@kubernetes/client-node";
import { type SessionEvent, sessionsApi, sessionsApiVersion } from "../../../api/session-events.ts";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import type { Cache } from "../kube/cache.ts";
import type { UserInfo } from "../server/front-proxy-auth.ts";
import { HttpError, type JsonAnswer, type Route } from "../server/https-server.ts";
import { sessionApiRoutes } from "./session-api.ts";
import type { SessionStore } from "./session-store.ts";
import { SqliteSessionStore } from "./sqlite-store.ts";

const groupPath = `/apis/${sessionsApi.group}`;
const versionPath = `${groupPath}/${sessionsApi.version}`;
const sessionPath = (namespace: string, name: string) =>
  `${versionPath}/namespaces/${namespace}/${sessionsApi.resource}/${name}`;

const alice: UserInfo = {
  username: "alice@example.com",
  uid: "u-alice",
  groups: ["ml-platform", "system:authenticated"],
  extra: { "scopes.example.com": ["audit"] },
};
const mallory: UserInfo = { username: "mallory@example.com", groups: [], extra: {} };

/** Runs as the informer's cache would hold them, by namespace/name. */
class MapCache implements Cache<LangGraphRun> {
  readonly #runs = new Map<string, LangGraphRun>();
  readonly reads: string[] = [];

  add(namespace: string, name: string, uid: string, phase?: "Running" | "Succeeded"): void {
    this.#runs.set(`${namespace}/${name}`, {
      metadata: { namespace, name, uid },
      spec: { template: {}, access: [], maxDuration: "30m" },
      ...(phase ? { status: { phase } } : {}),
    });
  }

  get(namespace: string, name: string): LangGraphRun | undefined {
    this.reads.push(`${namespace}/${name}`);
    return this.#runs.get(`${namespace}/${name}`);
  }

  list(namespace?: string): LangGraphRun[] {
    return [...this.#runs.values()].filter(
      (run) => namespace === undefined || run.metadata?.namespace === namespace,
    );
  }
}

/** The real SQLite store, with a note of every read the API makes of it. */
class RecordingStore implements SessionStore {
  readonly reads: string[] = [];
  readonly #store: SqliteSessionStore;

  constructor(file: string) {
    this.#store = new SqliteSessionStore(file);
  }

  ingest(events: SessionEvent[]): Promise<void> {
    return this.#store.ingest(events);
  }

  list(runUid: string, options?: { afterSeq?: number; limit?: number }) {
    this.reads.push(`list ${runUid}`);
    return this.#store.list(runUid, options);
  }

  summary(runUid: string) {
    this.reads.push(`summary ${runUid}`);
    return this.#store.summary(runUid);
  }

  latestRun(namespace: string, name: string) {
    this.reads.push(`latestRun ${namespace}/${name}`);
    return this.#store.latestRun(namespace, name);
  }

  close(): Promise<void> {
    return this.#store.close();
  }
}

/** The API server's authorizer: allows what `allow` holds as "user namespace/name". */
function fakeAuthorizer(answer?: (spec: V1SubjectAccessReview["spec"]) => unknown) {
  const allow = new Set<string>();
  const reviews: V1SubjectAccessReview[] = [];
  const authorization = {
    async createSubjectAccessReview({ body }: { body: V1SubjectAccessReview }) {
      reviews.push(body);
      if (answer) return { ...body, status: answer(body.spec) };
      const attributes = body.spec.resourceAttributes;
      const key = `${body.spec.user} ${attributes?.namespace}/${attributes?.name}`;
      return { ...body, status: { allowed: allow.has(key) } };
    },
  } as unknown as AuthorizationV1Api;
  return { authorization, allow, reviews };
}

const directories: string[] = [];
const stores: RecordingStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true });
});

function setup(options: { answer?: (spec: V1SubjectAccessReview["spec"]) => unknown } = {}) {
  const directory = mkdtempSync(join(tmpdir(), "lgjit-session-api-"));
  directories.push(directory);
  const store = new RecordingStore(join(directory, "sessions.db"));
  stores.push(store);
  const runs = new MapCache();
  const authorizer = fakeAuthorizer(options.answer);
  const users = new Map<string, UserInfo>([
    ["alice", alice],
    ["mallory", mallory],
  ]);
  const routes = sessionApiRoutes({
    store,
    runs,
    // The front proxy's word, reduced to a header naming the user; no header, no user.
    authenticate(request) {
      const user = users.get(String(request.headers["x-test-user"]));
      if (!user) {
        throw new HttpError(
          401,
          "Unauthorized",
          "the request carries no front-proxy client certificate",
        );
      }
      return user;
    },
    authorization: authorizer.authorization,
  });
  const route = routes[`${groupPath}/`] as Route;
  async function get(path: string, as?: "alice" | "mallory"): Promise<JsonAnswer> {
    const request = { method: "GET", headers: as ? { "x-test-user": as } : {} };
    return route.handle(
      request as unknown as IncomingMessage,
      new URL(path, "https://operator.lgjit.svc"),
      new AbortController().signal,
    );
  }
  return { routes, route, store, runs, get, ...authorizer };
}

function event(uid: string, seq: number, changes: Partial<SessionEvent> = {}): SessionEvent {
  return {
    schema: 1,
    run: { namespace: "agents", name: "kb-search", uid },
    seq,
    time: `2025-05-14T09:${String(seq % 60).padStart(2, "0")}:00.000Z`,
    kind: "request",
    connection: "kb-api",
    method: "GET",
    path: "/v1/docs",
    status: 200,
    ...changes,
  };
}

/** The answer is a Kubernetes Status failure with that code, reason and message. */
function assertFailure(answer: JsonAnswer, code: number, reason: string, message: string) {
  assert.deepEqual(answer, {
    status: code,
    body: {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message,
      reason,
      code,
    },
  });
}

const body = (answer: JsonAnswer) => answer.body as Record<string, unknown>;
const seqs = (answer: JsonAnswer) => (body(answer).events as SessionEvent[]).map((e) => e.seq);

describe("sessionApiRoutes", () => {
  it("serves GET under the API group's path", () => {
    const { routes } = setup();
    assert.deepEqual(Object.keys(routes), [`${groupPath}/`]);
    assert.equal(routes[`${groupPath}/`]?.method, "GET");
  });

  describe("refuses", () => {
    it("an unauthenticated request with 401, and reads nothing", async () => {
      const { get, store, runs, reviews } = setup();
      await store.ingest([event("uid-1", 1)]);
      for (const path of [sessionPath("agents", "kb-search"), groupPath, versionPath]) {
        assertFailure(
          await get(path),
          401,
          "Unauthorized",
          "the request carries no front-proxy client certificate",
        );
      }
      assert.deepEqual(store.reads, []);
      assert.deepEqual(runs.reads, []);
      assert.deepEqual(reviews, []);
    });

    it("a reader the authorizer denies with 403 naming the resource, and reads nothing", async () => {
      const { get, store, runs, allow } = setup();
      runs.add("agents", "kb-search", "uid-1", "Running");
      await store.ingest([event("uid-1", 1)]);
      allow.add(`${alice.username} agents/kb-search`);
      assertFailure(
        await get(sessionPath("agents", "kb-search"), "mallory"),
        403,
        "Forbidden",
        `runsessions.sessions.langgraph-jit.dev "kb-search" is forbidden: user "mallory@example.com" cannot get it in the namespace "agents"`,
      );
      assert.deepEqual(store.reads, []);
      assert.deepEqual(runs.reads, []);
    });

    it("a reader allowed another run's session", async () => {
      const { get, store, allow } = setup();
      allow.add(`${alice.username} agents/other-run`);
      const answer = await get(sessionPath("agents", "kb-search"), "alice");
      assert.equal(answer.status, 403);
      assert.match(
        String(body(answer).message),
        /"kb-search" is forbidden: user "alice@example.com"/,
      );
      assert.deepEqual(store.reads, []);
    });

    it("a reader the authorizer both allows and denies", async () => {
      const { get, store } = setup({ answer: () => ({ allowed: true, denied: true }) });
      const answer = await get(sessionPath("agents", "kb-search"), "alice");
      assert.equal(answer.status, 403);
      assert.deepEqual(store.reads, []);
    });

    it("to answer when the authorizer cannot be asked", async () => {
      const { store } = setup();
      const unreachable = sessionApiRoutes({
        store,
        runs: new MapCache(),
        authenticate: () => alice,
        authorization: {
          createSubjectAccessReview: async () => {
            throw new Error("connect ECONNREFUSED 10.96.0.1:443");
          },
        } as unknown as AuthorizationV1Api,
      })[`${groupPath}/`] as Route;
      await assert.rejects(
        unreachable.handle(
          { headers: {} } as unknown as IncomingMessage,
          new URL(sessionPath("agents", "kb-search"), "https://operator.lgjit.svc"),
          new AbortController().signal,
        ),
        /ECONNREFUSED/,
      );
      assert.deepEqual(store.reads, []);
    });

    it("a list of every session in a namespace with 405, before asking anyone", async () => {
      const { get, reviews, store } = setup();
      for (const path of [
        `${versionPath}/namespaces/agents/${sessionsApi.resource}`,
        `${versionPath}/namespaces/agents/${sessionsApi.resource}/`,
      ]) {
        assertFailure(
          await get(path, "alice"),
          405,
          "MethodNotAllowed",
          "list is not supported: name a run",
        );
      }
      assert.deepEqual(reviews, []);
      assert.deepEqual(store.reads, []);
    });

    it("paths it does not serve with 404", async () => {
      const { get, reviews } = setup();
      for (const path of [
        `${groupPath}/v1beta1`,
        `${groupPath}/v1beta1/namespaces/agents/${sessionsApi.resource}/kb-search`,
        `${versionPath}/namespaces/agents/langgraphruns/kb-search`,
        `${versionPath}/${sessionsApi.resource}/kb-search`,
        `${versionPath}/namespaces/Agents/${sessionsApi.resource}/kb-search`,
        `${versionPath}/namespaces/agents/${sessionsApi.resource}/KB_search`,
        `${versionPath}/namespaces/agents/${sessionsApi.resource}/kb-search/events`,
        `${versionPath}/namespaces/${"n".repeat(64)}/${sessionsApi.resource}/kb-search`,
        `${versionPath}/namespaces/agents/${sessionsApi.resource}/..%2Fsecrets`,
      ]) {
        const pathname = new URL(path, "https://x").pathname;
        assertFailure(await get(path, "alice"), 404, "NotFound", `${pathname} is not served here`);
      }
      assert.deepEqual(reviews, []);
    });

    it("bad paging parameters with 400 naming the parameter and its range", async () => {
      const { get, store, allow } = setup();
      allow.add(`${alice.username} agents/kb-search`);
      await store.ingest([event("uid-1", 1)]);
      const limit = `limit must be an integer from 1 to ${sessionsApi.maxLimit}`;
      const after = `continue must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}`;
      for (const [query, message] of [
        ["limit=0", limit],
        ["limit=-1", limit],
        [`limit=${sessionsApi.maxLimit + 1}`, limit],
        ["limit=1.5", limit],
        ["limit=ten", limit],
        ["limit=0x10", limit],
        ["limit=1e1", limit],
        ["continue=%205", after],
        ["limit=1&continue=-1", after],
        ["continue=abc", after],
        ["continue=0.5", after],
        [`continue=${Number.MAX_SAFE_INTEGER + 1}`, after],
      ] as const) {
        assertFailure(
          await get(`${sessionPath("agents", "kb-search")}?${query}`, "alice"),
          400,
          "BadRequest",
          message,
        );
      }
      assert.deepEqual(store.reads, []);
    });

    it("a run that neither exists nor has stored events with 404", async () => {
      const { get, allow, store } = setup();
      allow.add(`${alice.username} agents/gone`);
      await store.ingest([event("uid-1", 1)]);
      assertFailure(
        await get(sessionPath("agents", "gone"), "alice"),
        404,
        "NotFound",
        `no session of run "gone" in "agents"`,
      );
    });
  });

  describe("answers", () => {
    it("discovery of the group and its version to any authenticated reader", async () => {
      const { get, reviews } = setup();
      const groupVersion = { groupVersion: sessionsApiVersion, version: sessionsApi.version };
      assert.deepEqual(await get(groupPath, "mallory"), {
        status: 200,
        body: {
          kind: "APIGroup",
          apiVersion: "v1",
          name: sessionsApi.group,
          versions: [groupVersion],
          preferredVersion: groupVersion,
        },
      });
      const resources = await get(`${versionPath}/`, "mallory");
      assert.equal(resources.status, 200);
      assert.deepEqual(body(resources).kind, "APIResourceList");
      assert.deepEqual(body(resources).groupVersion, sessionsApiVersion);
      assert.deepEqual(body(resources).resources, [
        {
          name: sessionsApi.resource,
          singularName: "runsession",
          namespaced: true,
          kind: sessionsApi.kind,
          verbs: ["get"],
        },
      ]);
      assert.deepEqual(reviews, []);
    });

    it("asks the authorizer, as the reader, whether they may get that run's session", async () => {
      const { get, reviews, allow, runs } = setup();
      runs.add("agents", "kb-search", "uid-1", "Running");
      allow.add(`${alice.username} agents/kb-search`);
      assert.equal((await get(sessionPath("agents", "kb-search"), "alice")).status, 200);
      assert.deepEqual(
        reviews.map((review) => review.spec),
        [
          {
            user: alice.username,
            uid: alice.uid,
            groups: alice.groups,
            extra: alice.extra,
            resourceAttributes: {
              group: sessionsApi.group,
              version: sessionsApi.version,
              resource: sessionsApi.resource,
              verb: "get",
              namespace: "agents",
              name: "kb-search",
            },
          },
        ],
      );
    });

    it("the live run's events in sequence order, as sent, with its phase and counts", async () => {
      const { get, store, runs, allow } = setup();
      runs.add("agents", "kb-search", "uid-1", "Running");
      allow.add(`${alice.username} agents/kb-search`);
      const sent = [
        event("uid-1", 3, { kind: "masked", masked: { email: 2 } }),
        event("uid-1", 1, { query: ["page"], bytesOut: 512, durationMs: 4.5, rule: "read-docs" }),
        event("uid-1", 2, { kind: "denied", status: 403, reason: "NoRuleAllows" }),
        event("uid-1", 4, {
          kind: "statement",
          connection: "warehouse",
          method: undefined,
          path: undefined,
          status: undefined,
          sql: {
            command: "SELECT",
            action: "read",
            statement: "SELECT title FROM docs WHERE id = $1",
            fingerprint: "a0ead580058af585",
            tables: ["docs"],
            rows: 1,
          },
        }),
      ].map((e) => JSON.parse(JSON.stringify(e)) as SessionEvent);
      // Another run's events, and another run of that name, stay out of the answer.
      await store.ingest([
        event("uid-other", 1, { run: { namespace: "agents", name: "x", uid: "uid-other" } }),
      ]);
      await store.ingest([
        event("uid-0", 1, { run: { namespace: "agents", name: "kb-search", uid: "uid-0" } }),
      ]);
      await store.ingest(sent);
      assert.deepEqual(await get(sessionPath("agents", "kb-search"), "alice"), {
        status: 200,
        body: {
          apiVersion: sessionsApiVersion,
          kind: sessionsApi.kind,
          metadata: { name: "kb-search", namespace: "agents" },
          run: { uid: "uid-1", phase: "Running" },
          summary: { events: 4, denied: 1, masked: 1 },
          events: [...sent].sort((a, b) => a.seq - b.seq),
        },
      });
    });

    it("page by page with limit and continue, the last page without continue", async () => {
      const { get, store, runs, allow } = setup();
      runs.add("agents", "kb-search", "uid-1", "Succeeded");
      allow.add(`${alice.username} agents/kb-search`);
      await store.ingest([5, 4, 3, 2, 1].map((seq) => event("uid-1", seq)));
      const path = sessionPath("agents", "kb-search");

      const first = await get(`${path}?limit=2`, "alice");
      assert.deepEqual(seqs(first), [1, 2]);
      assert.equal(body(first).continue, "2");
      const second = await get(`${path}?limit=2&continue=2`, "alice");
      assert.deepEqual(seqs(second), [3, 4]);
      assert.equal(body(second).continue, "4");
      const last = await get(`${path}?limit=2&continue=4`, "alice");
      assert.deepEqual(seqs(last), [5]);
      assert.equal("continue" in body(last), false);
      // The counts are the run's, not the page's.
      assert.deepEqual(body(last).summary, { events: 5, denied: 0, masked: 0 });

      const exact = await get(`${path}?limit=5`, "alice");
      assert.deepEqual(seqs(exact), [1, 2, 3, 4, 5]);
      assert.equal("continue" in body(exact), false);
      const past = await get(`${path}?continue=5`, "alice");
      assert.deepEqual(seqs(past), []);
      assert.equal("continue" in body(past), false);
    });

    it(`at most ${sessionsApi.defaultLimit} events when no limit is given, and up to ${sessionsApi.maxLimit} when asked`, async () => {
      const { get, store, runs, allow } = setup();
      runs.add("agents", "kb-search", "uid-1", "Running");
      allow.add(`${alice.username} agents/kb-search`);
      const count = sessionsApi.defaultLimit + 1;
      await store.ingest(Array.from({ length: count }, (_, i) => event("uid-1", i + 1)));
      const path = sessionPath("agents", "kb-search");
      for (const query of ["", "?limit=", "?continue="]) {
        const answer = await get(`${path}${query}`, "alice");
        assert.equal(seqs(answer).length, sessionsApi.defaultLimit);
        assert.equal(body(answer).continue, String(sessionsApi.defaultLimit));
      }
      const all = await get(`${path}?limit=${sessionsApi.maxLimit}`, "alice");
      assert.equal(seqs(all).length, count);
      assert.equal("continue" in body(all), false);
    });

    it("a deleted run's session from the latest run of that name with stored events", async () => {
      const { get, store, allow, runs } = setup();
      allow.add(`${alice.username} agents/kb-search`);
      const of = (uid: string, seq: number, time: string) =>
        event(uid, seq, { run: { namespace: "agents", name: "kb-search", uid }, time });
      await store.ingest([
        of("uid-old", 1, "2025-05-13T08:00:00.000Z"),
        of("uid-old", 2, "2025-05-13T08:05:00.000Z"),
      ]);
      await store.ingest([of("uid-new", 1, "2025-05-14T09:00:00.000Z")]);
      const answer = await get(sessionPath("agents", "kb-search"), "alice");
      assert.equal(answer.status, 200);
      assert.deepEqual(runs.reads, ["agents/kb-search"]);
      assert.deepEqual(body(answer).run, { uid: "uid-new" });
      assert.deepEqual(seqs(answer), [1]);
      assert.deepEqual(body(answer).summary, { events: 1, denied: 0, masked: 0 });
    });

    it("the live run's session, even empty, over older stored runs of the same name", async () => {
      const { get, store, runs, allow } = setup();
      runs.add("agents", "kb-search", "uid-live");
      allow.add(`${alice.username} agents/kb-search`);
      await store.ingest([event("uid-old", 1)]);
      const answer = await get(sessionPath("agents", "kb-search"), "alice");
      assert.equal(answer.status, 200);
      assert.deepEqual(body(answer).run, { uid: "uid-live" });
      assert.deepEqual(seqs(answer), []);
      assert.deepEqual(body(answer).summary, { events: 0, denied: 0, masked: 0 });
      assert.equal(store.reads.includes("latestRun agents/kb-search"), false);
    });

    it("a path with a trailing slash as the path without it", async () => {
      const { get, store, runs, allow } = setup();
      runs.add("agents", "kb-search", "uid-1", "Running");
      allow.add(`${alice.username} agents/kb-search`);
      await store.ingest([event("uid-1", 1)]);
      const answer = await get(`${sessionPath("agents", "kb-search")}/`, "alice");
      assert.equal(answer.status, 200);
      assert.deepEqual(seqs(answer), [1]);
    });
  });
});
