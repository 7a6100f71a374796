// The operator's session-event ingest, as a sidecar reaches it: events signed by the run's JWT
// are stored once each (a resend changes nothing), the run's status.session counts follow, and
// a batch that is not the run's, not of the schema, or not signed is refused whole.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { SessionEvent } from "../../api/session-events.ts";
import { SqliteSessionStore } from "../../operator/src/sessions/sqlite-store.ts";
import { clusterDir, eventually } from "../lib/cluster.ts";
import { CredentialApiClient, podOfRun, podToken } from "../lib/credentials.ts";
import { useOperator } from "../lib/operator.ts";
import {
  createRun,
  readRun,
  runManifest,
  setUpBearerApiNamespace,
  waitForPhase,
} from "../lib/runs.ts";

describe("session event ingest", () => {
  const suite = useOperator("sessions");
  let client: CredentialApiClient;
  let runToken: string;
  let run: { namespace: string; name: string; uid: string };

  before(async () => {
    await setUpBearerApiNamespace(suite.ns.name, "events-only");
    const access = [{ connection: "kb-api", actions: ["read" as const] }];
    await createRun("alice", suite.ns.name, runManifest("recorded", { access }));
    const running = await waitForPhase(suite.ns.name, "recorded", "Running");
    run = { namespace: suite.ns.name, name: "recorded", uid: running.metadata?.uid ?? "" };
    client = new CredentialApiClient(suite.operator);
    const issued = await client.issue<{ token: string }>(
      await podToken(await podOfRun(suite.ns.name, "recorded")),
    );
    assert.equal(issued.status, 200);
    runToken = issued.body.token;
  });
  after(() => client?.close());

  const event = (seq: number, extra: Partial<SessionEvent> = {}): SessionEvent => ({
    schema: 1,
    run,
    seq,
    time: new Date().toISOString(),
    kind: "request",
    connection: "kb-api",
    method: "GET",
    path: `/v1/docs/${seq}`,
    status: 200,
    ...extra,
  });

  it("stores a batch once, however often it is sent, and counts it in the run's status", async () => {
    const batch = [
      event(1),
      event(2),
      event(3, {
        kind: "denied",
        status: 403,
        reason: "ActionNotGranted",
        query: ["export", "format"],
      }),
    ];
    for (let i = 0; i < 2; i++) {
      const answer = await client.postEvents(runToken, { events: batch });
      assert.deepEqual(answer, { status: 200, body: { ackedThrough: 3 } });
    }
    const counted = await eventually(
      "status.session",
      async () => {
        const current = await readRun(suite.ns.name, "recorded");
        return current?.status?.session?.events === 3 ? current.status.session : undefined;
      },
      10_000,
    );
    assert.deepEqual(counted, { events: 3, denied: 1, masked: 0 });
    const table = spawnSync(
      join(clusterDir, "bin", "kubectl"),
      [
        "--kubeconfig",
        join(clusterDir, "admin.kubeconfig"),
        "-n",
        suite.ns.name,
        "get",
        "lgr",
        "recorded",
        "-o",
        "wide",
      ],
      { encoding: "utf8" },
    ).stdout;
    assert.match(
      table,
      /^NAME\s+PHASE\s+REQUESTER\s+SOURCE\s+AGE\s+DEADLINE\s+CALLS\s+DENIED\s+REASON/m,
    );
    assert.match(table, /^recorded\s+Running\s+alice@example\.com\s+\S+\s+\S+\s+3\s+1\s/m);
    const store = new SqliteSessionStore(
      join(clusterDir, "logs", `sessions-${suite.system.name}.db`),
    );
    try {
      assert.deepEqual(await store.list(run.uid), batch);
    } finally {
      await store.close();
    }
  });

  it("refuses a batch that is not the run's, not of the schema or not signed, storing none of it", async () => {
    const other = { ...run, uid: "00000000-0000-4000-8000-000000000000" };
    const refusals: Array<[unknown, string | undefined, number, RegExp]> = [
      [
        { events: [event(4), { ...event(5), run: other }] },
        runToken,
        400,
        /events\[1\]\.run is not the run/,
      ],
      [
        { events: [event(4, { kind: "telepathy" as SessionEvent["kind"] })] },
        runToken,
        400,
        /events\[0\]\.kind must be one of/,
      ],
      [
        { events: [{ ...event(4), password: "x" }] },
        runToken,
        400,
        /events\[0\]\.password is not a field/,
      ],
      [{ events: [event(0)] }, runToken, 400, /events\[0\]\.seq must be a positive integer/],
      [
        { events: [{ ...event(4), query: "export=all" }] },
        runToken,
        400,
        /events\[0\]\.query must be at most 32 parameter names/,
      ],
      [{ events: [] }, runToken, 400, /1 to 500 events/],
      [{ events: [event(4)] }, undefined, 401, /./],
      [{ events: [event(4)] }, `${runToken.slice(0, -4)}AAAA`, 401, /./],
    ];
    for (const [body, token, status, message] of refusals) {
      const answer = await client.postEvents(token, body);
      assert.equal(answer.status, status, JSON.stringify(answer.body));
      assert.match(String(answer.body.error), message);
    }
    const current = await readRun(suite.ns.name, "recorded");
    assert.equal(current?.status?.session?.events, 3);
  });
});
