// Benchmark: credential issuance with 50 concurrent sidecars, each a Running run's pod holding a
// TokenRequest-bound token, against the real operator and API server. The baseline, measured in
// the same run with the same tokens and concurrency, is a bare TokenReview: the one API call an
// issuer cannot avoid without its cache.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { AuthenticationV1Api } from "@kubernetes/client-node";
import type { LangGraphRun } from "../api/v1alpha1.ts";
import { createTestNamespace, eventually, kubeConfigFor } from "../e2e/lib/cluster.ts";
import { CredentialApiClient, podOfRun, podToken } from "../e2e/lib/credentials.ts";
import { startOperator } from "../e2e/lib/operator.ts";
import {
  createRun,
  readRun,
  runManifest,
  setUpBearerApiNamespace,
  waitForPhase,
} from "../e2e/lib/runs.ts";
import { readiness, startSidecar } from "../e2e/lib/sidecar.ts";
import { closedLoop, inBatches, ms, openLoop, percentile } from "./lib/stats.ts";

const sidecars = Number(process.env.BENCH_SIDECARS ?? 50);
const durationMs = Number(process.env.BENCH_ISSUE_SECONDS ?? 15) * 1000;
const admin = kubeConfigFor("admin");
const authentication = admin.makeApiClient(AuthenticationV1Api);

const system = await createTestNamespace("bench-system");
const ns = await createTestNamespace("bench-credentials");
const operator = await startOperator(system.name, ["--log-level", "warn"]);
await setUpBearerApiNamespace(ns.name, "bench-token");

const names = Array.from({ length: sidecars }, (_, i) => `run-${i}`);
await inBatches(names, 10, (name) =>
  createRun(
    "alice",
    ns.name,
    runManifest(name, { access: [{ connection: "kb-api", actions: ["read"] }] }),
  ),
);
const tokens: string[] = [];
await inBatches(names, 10, async (name) => {
  await waitForPhase(ns.name, name, "Running", 120_000);
  tokens.push(await podToken(await podOfRun(ns.name, name)));
});

const api = new CredentialApiClient(operator);
const issue = async (worker: number) => {
  const answer = await api.issue(tokens[worker] ?? "");
  if (answer.status !== 200) throw new Error(`issuance failed: ${JSON.stringify(answer.body)}`);
};
const review = async (worker: number) => {
  const answer = await authentication.createTokenReview({
    body: { spec: { token: tokens[worker] ?? "", audiences: ["langgraph-jit"] } },
  });
  if (!answer.status?.authenticated) throw new Error("the baseline review failed");
};

// Cold: every sidecar's first request at once, nothing cached.
const cold: number[] = [];
await Promise.all(
  tokens.map(async (_, worker) => {
    const started = performance.now();
    await issue(worker);
    cold.push(performance.now() - started);
  }),
);
const fixedRate = Number(process.env.BENCH_ISSUE_RATE ?? 500);
// The cold round wrote every run's status and an Event each: let the control plane settle,
// and let the client open its connections at the fixed rate before measuring it.
await new Promise((resolve) => setTimeout(resolve, 5_000));
await openLoop(fixedRate, 3_000, (index) => issue(index % sidecars));
const paced = await openLoop(fixedRate, durationMs, (index) => issue(index % sidecars));
const before = await scrape();
const warm = await closedLoop(sidecars, durationMs, issue);
const after = await scrape();
// Last: a flood of reviews leaves the API server busy for a while after.
const baseline = await closedLoop(sidecars, durationMs, review);

const reviewSeconds = after.review - before.review;
const issueSeconds = after.issue - before.issue;
const perSecond = (run: { latencies: number[]; elapsedMs: number }) =>
  (run.latencies.length / run.elapsedMs) * 1000;
const row = (label: string, values: number[], rate?: number) =>
  console.log(
    `  ${label.padEnd(46)} ${ms(percentile(values, 50)).padStart(10)} ${ms(percentile(values, 99)).padStart(10)} ${rate === undefined ? "" : `${rate.toFixed(0).padStart(8)}/s`}`,
  );
console.log(
  `\nCredential issuance, ${sidecars} concurrent sidecars, ${durationMs / 1000} s each\n`,
);
console.log(
  `  ${"".padEnd(46)} ${"p50".padStart(10)} ${"p99".padStart(10)} ${"rate".padStart(10)}`,
);
row("bare TokenReview (baseline)", baseline.latencies, perSecond(baseline));
row("issuance, first request (review not cached)", cold);
row(`issuance at a fixed ${fixedRate}/s (reviews cached)`, paced);
row("issuance at saturation (reviews cached)", warm.latencies, perSecond(warm));
console.log(
  `  ${"ratio saturated issuance / bare TokenReview".padEnd(46)} ${(percentile(warm.latencies, 50) / percentile(baseline.latencies, 50)).toFixed(2).padStart(10)} ${(percentile(warm.latencies, 99) / percentile(baseline.latencies, 99)).toFixed(2).padStart(10)}   (target: issuance p99 <= 50 ms)`,
);
console.log(
  `  time in TokenReview: ${((reviewSeconds / issueSeconds) * 100).toFixed(1)}% of issuance time ` +
    `(${after.reviews - before.reviews} reviews, ${(((after.cachedReviews - before.cachedReviews) / Math.max(1, after.reviews - before.reviews)) * 100).toFixed(1)}% from the cache)`,
);

// An idle sidecar holding its credential, beside an idle bare Node.js process.
const firstRun = await readRun(ns.name, names[0] ?? "");
const firstPod = await podOfRun(ns.name, names[0] ?? "");
const sidecar = await startSidecar({
  operator,
  run: firstRun as LangGraphRun,
  pod: firstPod,
  token: await podToken(firstPod),
});
const bare = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
await eventually("the sidecar to be ready", async () => (await readiness(sidecar)) === 200);
await new Promise((resolve) => setTimeout(resolve, 10_000));
const sidecarRss = rssMb(sidecar.pid);
const bareRss = rssMb(bare.pid ?? -1);
bare.kill();
await sidecar.stop();
console.log(
  `  idle sidecar RSS ${sidecarRss.toFixed(1)} MB beside a bare Node.js process's ${bareRss.toFixed(1)} MB: ratio ${(sidecarRss / bareRss).toFixed(2)}   (target <= 60 MB)`,
);

await api.close();
await ns.remove(300_000);
await operator.remove();
await system.remove();

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

/** The operator's own accounting of where issuance time goes. */
async function scrape() {
  const text = await (await fetch(`${operator.metricsUrl}/metrics`)).text();
  const sum = (pattern: string) =>
    [...text.matchAll(new RegExp(`^${pattern} (\\S+)$`, "gm"))].reduce(
      (total, match) => total + Number(match[1]),
      0,
    );
  return {
    review: sum("lgjit_token_review_duration_seconds_sum\\{[^}]*\\}"),
    reviews: sum("lgjit_token_review_duration_seconds_count\\{[^}]*\\}"),
    cachedReviews: sum('lgjit_token_review_duration_seconds_count\\{cached="true"\\}'),
    issue: sum('lgjit_credential_issue_duration_seconds_sum\\{outcome="issued"\\}'),
  };
}
