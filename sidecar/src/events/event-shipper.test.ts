// The shipper against a server speaking the operator's events endpoint: every event arrives
// exactly once though the operator is away for a while, and a sidecar restarted on the same
// buffer sends what was left without losing or duplicating anything.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { pino } from "pino";
import { OperatorClient } from "../credentials/operator-client.ts";
import { CredentialApiServer } from "../testing/credential-api-server.ts";
import { freePort, waitFor } from "../testing/test-helpers.ts";
import { EventBuffer } from "./event-buffer.ts";
import { EventShipper } from "./event-shipper.ts";

const run = { namespace: "agents", name: "kb-search", uid: "0b6f2a8e-5d1c-4d3e-9a47-3c1b2f6e8d10" };
let directory: string;
before(() => {
  directory = mkdtempSync(join(tmpdir(), "lgjit-shipper-"));
});
after(() => rmSync(directory, { recursive: true, force: true }));

function shipperFor(buffer: EventBuffer, server: CredentialApiServer, token: string) {
  const operator = new OperatorClient({
    baseUrl: server.url,
    ca: server.caPem,
    connectTimeoutMs: 500,
  });
  const shipper = new EventShipper({
    buffer,
    post: (runToken, events, signal) => operator.postEvents(runToken, events, signal),
    token: () => token,
    logger: pino({ level: "silent" }),
    backoff: { initialMs: 20, maxMs: 100 },
    idleMs: 50,
  });
  return { shipper, close: () => operator.close() };
}

const record = (i: number) => ({
  time: new Date().toISOString(),
  kind: "request" as const,
  connection: "kb-api",
  method: "GET",
  path: `/v1/docs/${i}`,
  status: 200,
});

it("delivers every event exactly once across an operator outage and a restart of the sidecar", async () => {
  const port = await freePort();
  let server = await CredentialApiServer.create({ port });
  await server.listen();
  const token = await server.signRunToken();

  const buffer = new EventBuffer({ directory, run, segmentBytes: 2048 });
  const first = shipperFor(buffer, server, token);
  first.shipper.start();
  for (let i = 1; i <= 50; i++) buffer.append(record(i));
  await waitFor("50 events at the operator", () => server.events.size === 50);

  // The operator goes away; events keep being recorded on disk meanwhile.
  const authority = server;
  await server.close();
  for (let i = 51; i <= 300; i++) buffer.append(record(i));
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(buffer.pending, 250);

  // The sidecar is killed (no flush, nothing closed) and a new one starts on the same folder.
  await first.shipper.stop();
  await first.close();
  const restarted = new EventBuffer({ directory, run, segmentBytes: 2048 });
  assert.equal(restarted.pending, 250);
  for (let i = 301; i <= 320; i++) restarted.append(record(i));

  // The operator comes back on the same address (with a new process: its store is gone, so
  // it holds only what arrives from now on, which must be exactly events 51 to 320).
  server = await CredentialApiServer.create({ port });
  await server.listen();
  const second = shipperFor(restarted, server, token);
  second.shipper.start();
  await waitFor("the backlog at the operator", () => restarted.pending === 0, 10_000);
  await second.shipper.stop();
  await second.close();
  await server.close();

  assert.deepEqual(
    [...server.events.keys()].sort((a, b) => a - b),
    Array.from({ length: 270 }, (_, i) => i + 51),
  );
  assert.equal(server.eventsReceived, 270, "an acknowledged event was sent again");
  assert.equal(authority.events.size, 50);
  restarted.close();
});

it("flushes what is left within the deadline it is given", async () => {
  const server = await CredentialApiServer.create();
  await server.listen();
  const buffer = new EventBuffer({ directory: join(directory, "flush"), run });
  const { shipper, close } = shipperFor(buffer, server, await server.signRunToken());
  for (let i = 1; i <= 700; i++) buffer.append(record(i));
  assert.equal(await shipper.flush(2_000), true);
  assert.equal(server.events.size, 700);
  assert.equal(server.eventPosts, 2, "700 events go in two batches of at most 500");
  await close();
  await server.close();
  buffer.close();
});

it("keeps running, and says why, when the buffer's files cannot be read", async () => {
  const folder = join(directory, "unreadable");
  const buffer = new EventBuffer({ directory: folder, run });
  buffer.append(record(1));
  for (const file of readdirSync(folder)) if (file.endsWith(".jsonl")) rmSync(join(folder, file));
  const warnings: string[] = [];
  const shipper = new EventShipper({
    buffer,
    post: async () => assert.fail("nothing could be read, so nothing is posted"),
    token: () => "run-token",
    logger: pino({ level: "warn" }, { write: (line: string) => void warnings.push(line) }),
    backoff: { initialMs: 20, maxMs: 100 },
    idleMs: 50,
  });
  shipper.start();
  await waitFor("a warning naming the missing segment", () =>
    warnings.some((line) => line.includes("ENOENT")),
  );
  await shipper.stop();
  buffer.close();
});
