// The Helm chart: it lints, its values are checked by values.schema.json, and what it renders is
// accepted by the real API server (server-side dry run against the cluster's OpenAPI).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { KubernetesObject } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { sessionsApi } from "../../api/session-events.ts";
import {
  mutatingConfiguration,
  validatingConfiguration,
} from "../../operator/src/admission/webhook-configurations.ts";
import { sessionsApiServiceName } from "../../operator/src/install.ts";
import { clusterDir, createTestNamespace, repoRoot } from "../lib/cluster.ts";

const chart = join(repoRoot, "charts", "langgraph-jit");
const helm = join(clusterDir, "bin", "helm");
const kubectl = join(clusterDir, "bin", "kubectl");
const kubeVersion = ["--kube-version", "1.34.4"];

function run(command: string, args: string[], input?: string) {
  const result = spawnSync(command, args, { encoding: "utf8", input });
  return { status: result.status, out: `${result.stdout}${result.stderr}` };
}

const highAvailability = [
  "replicaCount=2",
  "sessionStore.postgresSecret.name=pg",
  "sessionStore.postgresSecret.key=url",
];

function render(namespace: string, ...set: string[]) {
  return run(helm, [
    "template",
    "lgjit",
    chart,
    "--namespace",
    namespace,
    "--include-crds",
    ...kubeVersion,
    ...set.flatMap((value) => ["--set", value]),
  ]);
}

describe("the Helm chart", () => {
  it("lints clean", () => {
    const { status, out } = run(helm, ["lint", "--strict", chart, ...kubeVersion]);
    assert.equal(status, 0, out);
  });

  it("renders objects the API server accepts (server-side dry run)", async () => {
    const ns = await createTestNamespace("chart");
    try {
      // The high-availability values render every object the chart has.
      const rendered = render(ns.name, ...highAvailability);
      assert.equal(rendered.status, 0, rendered.out);
      for (const kind of [
        "Deployment",
        "Service",
        "ClusterRole",
        "PodDisruptionBudget",
        "APIService",
      ]) {
        assert.match(rendered.out, new RegExp(`^kind: ${kind}$`, "m"));
      }
      const applied = run(
        kubectl,
        [
          "--kubeconfig",
          join(clusterDir, "admin.kubeconfig"),
          "apply",
          "--dry-run=server",
          // Each object names its namespace (one RoleBinding lives in kube-system).
          "-f",
          "-",
        ],
        rendered.out,
      );
      assert.equal(applied.status, 0, applied.out);
      assert.match(applied.out, /deployment\.apps\/lgjit-langgraph-jit created \(server dry run\)/);
    } finally {
      await ns.remove();
    }
  });

  it("refuses values its schema does not allow, naming them", () => {
    const zero = render("x", "replicaCount=0");
    assert.notEqual(zero.status, 0);
    assert.match(zero.out, /replicaCount/);
    const unknown = render("x", "replicas=2");
    assert.notEqual(unknown.status, 0);
    assert.match(unknown.out, /replicas/);
    const ttl = render("x", "runTokenTtl=soon");
    assert.notEqual(ttl.status, 0);
    assert.match(ttl.out, /runTokenTtl/);
    // Replicas with a SQLite file each would split a run's events between them.
    const split = render("x", "replicaCount=2");
    assert.notEqual(split.status, 0);
    assert.match(split.out, /sessionStore\/postgresSecret/);
  });

  it("renders the webhook configurations the operator applies, but for the CA it fills in", () => {
    const rendered = render("lgjit-system");
    const objects = parseAllDocuments(rendered.out).map((d) => d.toJS() as KubernetesObject);
    const target = {
      name: "lgjit-langgraph-jit",
      namespace: "lgjit-system",
      caBundlePem: "",
      service: { name: "lgjit-langgraph-jit", port: 8443 },
    };
    for (const expected of [mutatingConfiguration(target), validatingConfiguration(target)]) {
      const chartWebhook = objects.find((o) => o.kind === expected.kind) as typeof expected;
      assert.ok(chartWebhook, `the chart renders no ${expected.kind}`);
      const operatorWebhooks = expected.webhooks?.map(({ clientConfig, ...rest }) => ({
        ...rest,
        clientConfig: { service: clientConfig.service },
      }));
      assert.deepEqual(chartWebhook.webhooks, operatorWebhooks);
    }
  });

  it("renders the tagged pods' webhook the operator applies when podInjection is enabled", () => {
    const rendered = render("lgjit-system", "podInjection.enabled=true");
    const objects = parseAllDocuments(rendered.out).map((d) => d.toJS() as KubernetesObject);
    const target = {
      name: "lgjit-langgraph-jit",
      namespace: "lgjit-system",
      caBundlePem: "",
      service: { name: "lgjit-langgraph-jit", port: 8443 },
      injectPods: true,
    };
    const expected = mutatingConfiguration(target);
    for (const configuration of [expected, validatingConfiguration(target)]) {
      const chartWebhook = objects.find(
        (o) => o.kind === configuration.kind,
      ) as typeof configuration;
      assert.deepEqual(
        chartWebhook.webhooks,
        configuration.webhooks?.map(({ clientConfig, ...rest }) => ({
          ...rest,
          clientConfig: { service: clientConfig.service },
        })),
      );
    }
    const pods = expected.webhooks?.find((w) => w.name === "pods.langgraph-jit.dev");
    assert.deepEqual(pods?.objectSelector, { matchLabels: { "langgraph-jit.dev/inject": "true" } });
    assert.deepEqual(pods?.namespaceSelector?.matchLabels, {
      "langgraph-jit.dev/inject": "enabled",
    });
    const deployment = objects.find((o) => o.kind === "Deployment") as KubernetesObject & {
      spec: { template: { spec: { containers: { args: string[] }[] } } };
    };
    assert.ok(deployment.spec.template.spec.containers[0]?.args.includes("--inject-pods=true"));
  });

  it("registers the sessions API the operator serves and trusts", () => {
    const objects = parseAllDocuments(render("lgjit-system").out).map(
      (d) => d.toJS() as KubernetesObject & { spec: Record<string, unknown> },
    );
    const service = objects.find((o) => o.kind === "APIService");
    assert.equal(service?.metadata?.name, sessionsApiServiceName);
    assert.equal(service?.spec.group, sessionsApi.group);
    assert.equal(service?.spec.version, sessionsApi.version);
    assert.deepEqual(service?.spec.service, {
      namespace: "lgjit-system",
      name: "lgjit-langgraph-jit",
      port: 8443,
    });
    assert.equal(service?.spec.insecureSkipTLSVerify, undefined, "the CA must be verified");
  });

  it("keeps one replica through a drain only when there are several", () => {
    assert.doesNotMatch(render("x", "replicaCount=1").out, /PodDisruptionBudget/);
    const ha = render(
      "x",
      "replicaCount=2",
      "sessionStore.postgresSecret.name=pg",
      "sessionStore.postgresSecret.key=url",
    );
    assert.match(ha.out, /kind: PodDisruptionBudget/);
    assert.match(ha.out, /secretKeyRef: \{name: pg, key: url\}/);
  });
});
