import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, parseConfig } from "./config.ts";

test("defaults come from the option table", () => {
  const config = parseConfig([], {});
  assert.equal(config.command, "run");
  assert.equal(config.namespace, "langgraph-jit");
  assert.deepEqual(config.listen, { host: "0.0.0.0", port: 8443 });
  assert.equal(config.operatorUrl, "https://langgraph-jit.langgraph-jit.svc.cluster.local:8443");
  assert.equal(config.sidecarUid, 17337);
  assert.equal(config.leaderElection, true);
  assert.equal(config.injectPods, false, "tagged workloads are opted into");
  assert.equal(parseConfig(["--inject-pods", "true"], {}).injectPods, true);
});

test("flags win over environment variables, which win over defaults", () => {
  const config = parseConfig(["--workers", "8"], { LGJIT_WORKERS: "2", LGJIT_NAMESPACE: "ops" });
  assert.equal(config.workers, 8);
  assert.equal(config.namespace, "ops");
});

test("bad values are refused with the flag named", () => {
  assert.throws(
    () => parseConfig(["--listen", "8443"], {}),
    /--listen must be host:port, got "8443"/,
  );
  assert.throws(() => parseConfig(["--workers", "0"], {}), /--workers must be an integer >= 1/);
  assert.throws(
    () => parseConfig(["--leader-election", "yes"], {}),
    /--leader-election must be true or false/,
  );
  assert.throws(() => parseConfig(["--no-such-flag", "x"], {}), ConfigError);
  assert.throws(() => parseConfig(["frobnicate"], {}), /unknown command "frobnicate"/);
});

test("the session store is a SQLite file or a PostgreSQL URL, and a bad one never echoes a password", () => {
  assert.deepEqual(parseConfig([], {}).sessionStore, { kind: "sqlite", file: "sessions.db" });
  assert.deepEqual(parseConfig(["--session-store", "sqlite:/data/s.db"], {}).sessionStore, {
    kind: "sqlite",
    file: "/data/s.db",
  });
  const url = "postgresql://lgjit:secret@db.example:5432/sessions";
  assert.deepEqual(parseConfig([], { LGJIT_SESSION_STORE: url }).sessionStore, {
    kind: "postgres",
    url,
  });
  assert.throws(
    () => parseConfig(["--session-store", "mysql://u:hunter2@db/x"], {}),
    (error: unknown) =>
      error instanceof ConfigError &&
      /--session-store must be sqlite:<file> or a postgres:\/\/ URL/.test(error.message) &&
      !error.message.includes("hunter2"),
  );
});

test("every flag is checked: a value Kubernetes or pino would reject names its flag", () => {
  const refusals: [string[], RegExp][] = [
    [["--log-level", "verbose"], /--log-level must be one of fatal, error, warn, info/],
    [
      ["--sidecar-image-pull-policy", "Sometimes"],
      /--sidecar-image-pull-policy must be one of Always, IfNotPresent, Never/,
    ],
    [["--sidecar-image", "Lgjit/Sidecar:1"], /--sidecar-image must be an image reference/],
    [["--sidecar-image", "sidecar :1"], /--sidecar-image must be an image reference/],
    [["--namespace", "Team_A"], /--namespace must be a DNS-1123 label/],
    [["--service-name", "a.b"], /--service-name must be a DNS-1123 label/],
    [["--lease-name", "Lease"], /--lease-name must be a DNS-1123 subdomain/],
    [["--webhook-secret-name", "tls secret"], /--webhook-secret-name must be a DNS-1123/],
    [["--cluster-domain", "cluster..local"], /--cluster-domain must be a DNS-1123 subdomain/],
    [["--operator-url", "http://operator:8443"], /--operator-url must be an https:\/\/ URL/],
    [["--webhook-url", "not a url"], /--webhook-url must be an https:\/\/ URL/],
    [["--run-token-ttl", "soon"], /--run-token-ttl must be a duration/],
  ];
  for (const [argv, message] of refusals) assert.throws(() => parseConfig(argv, {}), message);
  const accepted = parseConfig(
    [
      "--sidecar-image",
      `registry.example:5000/lgjit/sidecar:0.1.0-rc.1@sha256:${"a".repeat(64)}`,
      "--sidecar-image-pull-policy",
      "Always",
      "--log-level",
      "debug",
      "--lease-name",
      "lgjit.operator",
    ],
    {},
  );
  assert.equal(accepted.sidecarImagePullPolicy, "Always");
  assert.equal(accepted.logLevel, "debug");
});
