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
