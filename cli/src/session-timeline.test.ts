import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RunSession, SessionEvent } from "../../api/session-events.ts";
import { parseCommand, UsageError } from "./main.ts";
import { timeline } from "./session-timeline.ts";

const run = { namespace: "agents", name: "kb-search", uid: "5f1c0c9e-0000-4000-8000-000000000001" };
const events: SessionEvent[] = [
  {
    schema: 1,
    run,
    seq: 1,
    time: "2026-11-28T19:42:01.123Z",
    kind: "masked",
    connection: "kb-api",
    method: "GET",
    path: "/v1/docs",
    status: 200,
    bytesIn: 0,
    bytesOut: 2048,
    durationMs: 4.06,
    rule: "read",
    masked: { email: 2, "credit-card": 1 },
  },
  {
    schema: 1,
    run,
    seq: 2,
    time: "2026-11-28T19:42:01.140Z",
    kind: "denied",
    connection: "kb-api",
    method: "POST",
    path: "/v1/docs",
    query: ["export", "page"],
    status: 403,
    reason: "ActionNotGranted",
  },
];
const session: RunSession = {
  apiVersion: "sessions.langgraph-jit.dev/v1alpha1",
  kind: "RunSession",
  metadata: { namespace: run.namespace, name: run.name },
  run: { uid: run.uid, phase: "Succeeded" },
  summary: { events: 2, denied: 1, masked: 1 },
  events,
};

describe("the session timeline", () => {
  it("prints one aligned row per event under the run's counts", () => {
    const lines = timeline(session, events).trimEnd().split("\n");
    assert.equal(
      lines[0],
      `Run agents/kb-search (uid ${run.uid}, Succeeded): 2 events, 1 denied, 1 masked`,
    );
    assert.match(lines[1] ?? "", /^TIME\s+SEQ\s+CONNECTION\s+EVENT\s+REQUEST\s+STATUS/);
    assert.match(
      lines[2] ?? "",
      /^2026-11-28T19:42:01\.123Z\s+1\s+kb-api\s+masked\s+GET \/v1\/docs\s+200\s+0B\s+2\.0KiB\s+4\.1ms\s+rule read; masked email×2 credit-card×1$/,
    );
    assert.match(
      lines[3] ?? "",
      /^2026-11-28T19:42:01\.140Z\s+2\s+kb-api\s+denied\s+POST \/v1\/docs\?export&page\s+403\s+-\s+-\s+-\s+ActionNotGranted$/,
    );
    // Columns line up: every row's REQUEST starts where the header's does.
    const at = lines[1]?.indexOf("REQUEST");
    assert.equal(lines[2]?.indexOf("GET"), at);
    assert.equal(lines[3]?.indexOf("POST"), at);
  });

  it("says how a held command was decided", () => {
    const held: SessionEvent = {
      ...(events[1] as SessionEvent),
      reason: "ApprovalDenied",
      approval: {
        command: "kb-writer-x7k2q",
        decision: "Denied",
        message: "denied by bob@example.com: one is enough",
      },
    };
    assert.match(
      timeline(session, [held]),
      /403\s+-\s+-\s+-\s+ApprovalDenied; held as kb-writer-x7k2q, Denied: denied by bob@example.com: one is enough\n$/,
    );
  });

  it("says how the run itself was decided, on the operator's own first row", () => {
    const approval: SessionEvent = {
      schema: 1,
      run: (events[0] as SessionEvent).run,
      seq: 0,
      time: "2026-11-28T19:40:00.000Z",
      kind: "approval",
      approval: { decision: "Approved", message: "approved by bob@example.com (ok)" },
    };
    assert.match(
      timeline(session, [approval]),
      /\n2026-11-28T19:40:00\.000Z\s+0\s+-\s+approval\s+-\s+-\s+-\s+-\s+-\s+Approved: approved by bob@example.com \(ok\)\n$/,
    );
  });

  it("escapes control characters a stored event carries, so it cannot rewrite the terminal", () => {
    const hostile: SessionEvent = {
      ...(events[1] as SessionEvent),
      reason: "\u001b[2J\u001b[1;1HAll clear\nfine",
      path: "/v1/\u009bdocs",
    };
    const text = timeline(session, [hostile]);
    assert.doesNotMatch(text.trimEnd().split("\n").slice(1).join(""), /\p{Cc}/u);
    assert.match(text, /\\u\{1b\}\[2J\\u\{1b\}\[1;1HAll clear\\u\{a\}fine/);
    assert.match(text, /\/v1\/\\u\{9b\}docs/);
  });

  it("says so when nothing was recorded, and when the run's object is gone", () => {
    const gone = {
      ...session,
      run: { uid: run.uid },
      summary: { events: 0, denied: 0, masked: 0 },
    };
    assert.equal(
      timeline(gone, []),
      `Run agents/kb-search (uid ${run.uid}, object deleted): 0 events, 0 denied, 0 masked\nNo events recorded.\n`,
    );
  });
});

describe("kubectl jit's arguments", () => {
  it("reads logs RUN with its options", () => {
    assert.deepEqual(parseCommand(["logs", "kb-search", "-n", "agents", "-o", "json"]), {
      name: "logs",
      run: "kb-search",
      namespace: "agents",
      output: "json",
      chunkSize: 1000,
    });
    const chunked = parseCommand(["logs", "x", "--chunk-size", "2"]);
    assert.equal(chunked !== "help" && chunked.name === "logs" && chunked.chunkSize, 2);
    assert.equal(parseCommand([]), "help");
    assert.deepEqual(parseCommand(["approve", "r", "--reason", " checked the diff "]), {
      name: "approve",
      run: "r",
      reason: "checked the diff",
      namespace: undefined,
    });
    assert.deepEqual(parseCommand(["approvals", "-A", "-o", "wide"]), {
      name: "approvals",
      allNamespaces: true,
      output: "wide",
      namespace: undefined,
    });
    assert.equal(parseCommand(["logs", "x", "--help"]), "help");
  });

  it("refuses what it does not know, naming it", () => {
    const refused = (argv: string[], message: RegExp) =>
      assert.throws(
        () => parseCommand(argv),
        (error: unknown) => {
          assert.ok(error instanceof UsageError);
          assert.match(error.message, message);
          return true;
        },
      );
    refused(["replay", "x"], /unknown command "replay": try logs, approvals, approve or deny/);
    refused(["approve", "r"], /approve needs --reason/);
    refused(["deny", "r", "--reason", "  "], /deny needs --reason/);
    refused(["deny", "--reason", "no"], /deny needs the name of a run or held command/);
    refused(["approvals", "-A", "-n", "x"], /exclude each other/);
    refused(["approvals", "-o", "table"], /--output must be text, wide, json or yaml/);
    refused(["approvals", "extra"], /unexpected arguments: extra/);
    refused(["logs"], /needs the run's name/);
    refused(["logs", "a", "b"], /unexpected arguments: b/);
    refused(["logs", "a", "-o", "yaml"], /--output must be text or json, not "yaml"/);
    refused(["logs", "a", "--since", "1h"], /--since/);
    for (const size of ["0", "5001", "1.5", "ten"]) {
      refused(
        ["logs", "a", "--chunk-size", size],
        /--chunk-size must be a whole number from 1 to 5000/,
      );
    }
  });
});
