// Benchmark: 500 LangGraphRuns created at once. The operator's latency from run creation to
// Job creation is compared with Kubernetes' own Job controller's from Job creation to its
// first Pod, measured in the same run on the same cluster.
import { readFileSync } from "node:fs";
import {
  BatchV1Api,
  CoreV1Api,
  type KubernetesListObject,
  type KubernetesObject,
} from "@kubernetes/client-node";
import { pino } from "pino";
import { createTestNamespace, kubeConfigFor } from "../e2e/lib/cluster.ts";
import { startOperator } from "../e2e/lib/operator.ts";
import { createRun, runManifest, setUpRunNamespace } from "../e2e/lib/runs.ts";
import { ResilientInformer } from "../operator/src/kube/informer.ts";
import { inBatches, percentile } from "./lib/stats.ts";

const count = Number(process.env.BENCH_RUNS ?? 500);
const createConcurrency = 50;
const admin = kubeConfigFor("admin");
const core = admin.makeApiClient(CoreV1Api);
const batch = admin.makeApiClient(BatchV1Api);
const quiet = pino({ level: "silent" });

/** Records when each object under `path` is first seen, keyed by keyOf; survives watch restarts. */
async function watchFirstSeen(
  path: string,
  list: () => Promise<KubernetesListObject<KubernetesObject>>,
  keyOf: (obj: KubernetesObject) => string | undefined,
) {
  const seen = new Map<string, number>();
  const informer = new ResilientInformer<KubernetesObject>({
    kc: admin,
    name: path,
    path,
    list,
    logger: quiet,
  });
  informer.onChange((obj) => {
    const key = keyOf(obj);
    if (key && !seen.has(key)) seen.set(key, performance.now());
  });
  await informer.start();
  return { seen, stop: () => informer.stop() };
}

async function waitForCount(
  seen: Map<string, number>,
  expected: number,
  what: string,
  timeoutMs = 600_000,
) {
  const deadline = Date.now() + timeoutMs;
  while (seen.size < expected) {
    if (Date.now() > deadline) throw new Error(`timed out: ${seen.size}/${expected} ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

async function measureOperator() {
  const system = await createTestNamespace("bench-system");
  const ns = await createTestNamespace("bench-runs");
  const operator = await startOperator(system.name, ["--log-level", "warn"]);
  await setUpRunNamespace(ns.name);
  const names = Array.from({ length: count }, (_, i) => `run-${i}`);
  const created = new Map<string, number>();
  const jobs = await watchFirstSeen(
    `/apis/batch/v1/namespaces/${ns.name}/jobs`,
    () => batch.listNamespacedJob({ namespace: ns.name }),
    (o) => o.metadata?.name,
  );
  const started = performance.now();
  await inBatches(names, createConcurrency, async (name) => {
    await createRun("alice", ns.name, runManifest(name));
    created.set(name, performance.now());
  });
  await waitForCount(jobs.seen, count, "Jobs");
  const allJobsMs = Math.max(...jobs.seen.values()) - started;
  jobs.stop();
  const latencies = names.map(
    (n) => (jobs.seen.get(n) ?? Number.NaN) - (created.get(n) ?? Number.NaN),
  );
  const rssMb = peakRssMb(operator.pid());
  const metrics = await (await fetch(`${operator.metricsUrl}/metrics`)).text();
  const metric = (name: string) =>
    Number(new RegExp(`^${name} (\\S+)$`, "m").exec(metrics)?.[1]) / 2 ** 20;
  console.error(
    `operator memory: heap used ${metric("lgjit_operator_nodejs_heap_size_used_bytes").toFixed(0)} MB, ` +
      `heap total ${metric("lgjit_operator_nodejs_heap_size_total_bytes").toFixed(0)} MB, ` +
      `external ${metric("lgjit_operator_nodejs_external_memory_bytes").toFixed(0)} MB`,
  );
  return {
    latencies,
    allJobsMs,
    rssMb,
    cleanup: async () => {
      await ns.remove(300_000);
      await operator.remove();
      await system.remove();
    },
  };
}

async function measureJobController() {
  const ns = await createTestNamespace("bench-jobs");
  const names = Array.from({ length: count }, (_, i) => `job-${i}`);
  const created = new Map<string, number>();
  const pods = await watchFirstSeen(
    `/api/v1/namespaces/${ns.name}/pods`,
    () => core.listNamespacedPod({ namespace: ns.name }),
    (o) => o.metadata?.labels?.["job-name"],
  );
  await inBatches(names, createConcurrency, async (name) => {
    await batch.createNamespacedJob({
      namespace: ns.name,
      body: {
        metadata: { name },
        spec: {
          backoffLimit: 0,
          template: {
            spec: {
              restartPolicy: "Never",
              containers: [{ name: "graph", image: "example.invalid/kb-graph:1.4" }],
            },
          },
        },
      },
    });
    created.set(name, performance.now());
  });
  await waitForCount(pods.seen, count, "Pods");
  pods.stop();
  const latencies = names.map(
    (n) => (pods.seen.get(n) ?? Number.NaN) - (created.get(n) ?? Number.NaN),
  );
  return { latencies, cleanup: () => ns.remove(300_000) };
}

const ms = (v: number) => `${v.toFixed(0)} ms`;
// The baseline runs first and is cleaned up, so each phase has the control plane to itself
// (apart from the Job controller making the pods of the operator's own Jobs, which is real load).
const jobController = await measureJobController();
await jobController.cleanup();
const operator = await measureOperator();
const rows = [
  ["", "p50", "p99"],
  [
    "operator: run created -> Job created",
    ms(percentile(operator.latencies, 50)),
    ms(percentile(operator.latencies, 99)),
  ],
  [
    "Job controller: Job created -> first Pod",
    ms(percentile(jobController.latencies, 50)),
    ms(percentile(jobController.latencies, 99)),
  ],
];
const ratio50 = percentile(operator.latencies, 50) / percentile(jobController.latencies, 50);
const ratio99 = percentile(operator.latencies, 99) / percentile(jobController.latencies, 99);
console.log(`\n${count} LangGraphRuns created at once (${createConcurrency} concurrent creates)\n`);
for (const row of rows)
  console.log(`  ${row[0]?.padEnd(44)} ${row[1]?.padStart(10)} ${row[2]?.padStart(10)}`);
console.log(
  `  ${"ratio operator / Job controller".padEnd(44)} ${ratio50.toFixed(2).padStart(10)} ${ratio99.toFixed(2).padStart(10)}   (target p99 <= 1.5)`,
);
console.log(`  all ${count} Jobs exist after ${ms(operator.allJobsMs)}`);
console.log(`  operator peak RSS ${operator.rssMb.toFixed(0)} MB   (target <= 200 MB)`);
await operator.cleanup();
