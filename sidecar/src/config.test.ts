// The sidecar's environment: parsed once, defaults filled in, and every mistake named by its
// variable.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "./config.ts";
import { createTestAuthority } from "./testing/credential-api-server.ts";

const { certPem } = await createTestAuthority();

function environment(overrides: Record<string, string | undefined> = {}) {
  return {
    LGJIT_RUN: "kb-refresh",
    LGJIT_RUN_UID: "run-uid",
    LGJIT_OPERATOR_URL: "https://langgraph-jit.langgraph-jit.svc:8443/",
    LGJIT_OPERATOR_CA: certPem,
    LGJIT_TOKEN_FILE: "/var/run/secrets/langgraph-jit/token",
    LGJIT_LISTENERS: '{"kb-postgres":15432,"kb-api":15433}',
    LGJIT_NAMESPACE: "agents",
    LGJIT_POD_NAME: "kb-refresh-x7k2p",
    LGJIT_POD_UID: "pod-uid",
    ...overrides,
  };
}

function refusal(overrides: Record<string, string | undefined>): string {
  try {
    loadConfig(environment(overrides), () => {
      throw new Error("ENOENT: no such file");
    });
  } catch (error) {
    assert.ok(error instanceof ConfigError, `a ConfigError, got ${error}`);
    return error.message;
  }
  assert.fail("the environment was accepted");
}

describe("sidecar config", () => {
  it("parses the Job builder's environment and fills in defaults", () => {
    const config = loadConfig(environment());
    assert.equal(config.operatorUrl, "https://langgraph-jit.langgraph-jit.svc:8443");
    assert.deepEqual(
      [...config.listeners],
      [
        ["kb-postgres", 15432],
        ["kb-api", 15433],
      ],
    );
    assert.deepEqual(config.admin, { host: "127.0.0.1", port: 15020 });
    assert.equal(config.proxyPort, 15000);
    assert.equal(config.stateDir, "/var/lib/langgraph-jit");
    assert.equal(config.logLevel, "info");
    assert.equal(config.podUid, "pod-uid");
    assert.match(config.operatorCa, /^-----BEGIN CERTIFICATE-----/);
  });

  it("reads the CA from LGJIT_OPERATOR_CA_FILE", () => {
    const config = loadConfig(
      environment({ LGJIT_OPERATOR_CA: undefined, LGJIT_OPERATOR_CA_FILE: "/etc/ca.pem" }),
      (path) => (path === "/etc/ca.pem" ? certPem : ""),
    );
    assert.equal(config.operatorCa.trim(), certPem.trim());
  });

  it("names the variable that is missing or wrong", () => {
    const cases: Array<[Record<string, string | undefined>, RegExp]> = [
      [{ LGJIT_RUN: undefined }, /^LGJIT_RUN is not set/],
      [{ LGJIT_TOKEN_FILE: " " }, /^LGJIT_TOKEN_FILE is not set/],
      [
        { LGJIT_OPERATOR_URL: "http://operator:8080" },
        /^LGJIT_OPERATOR_URL .* must be an https URL/,
      ],
      [{ LGJIT_OPERATOR_URL: "operator" }, /^LGJIT_OPERATOR_URL "operator" is not a URL/],
      [{ LGJIT_OPERATOR_URL: "https://op/?x=1" }, /^LGJIT_OPERATOR_URL .* base URL/],
      [{ LGJIT_OPERATOR_CA: undefined }, /LGJIT_OPERATOR_CA \(PEM\) nor LGJIT_OPERATOR_CA_FILE/],
      [{ LGJIT_OPERATOR_CA: "not a pem" }, /^LGJIT_OPERATOR_CA holds no PEM certificate/],
      [
        {
          LGJIT_OPERATOR_CA: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        },
        /^LGJIT_OPERATOR_CA: certificate 1 is not valid/,
      ],
      [{ LGJIT_OPERATOR_CA_FILE: "/etc/ca.pem" }, /set only one of LGJIT_OPERATOR_CA/],
      [
        { LGJIT_OPERATOR_CA: undefined, LGJIT_OPERATOR_CA_FILE: "/etc/ca.pem" },
        /^LGJIT_OPERATOR_CA_FILE "\/etc\/ca.pem" cannot be read: ENOENT/,
      ],
      [{ LGJIT_ADMIN_PORT: "70000" }, /^LGJIT_ADMIN_PORT "70000" is not a port number/],
      [{ LGJIT_PROXY_PORT: "15000x" }, /^LGJIT_PROXY_PORT "15000x" is not a port number/],
      [{ LGJIT_LISTENERS: "[1]" }, /^LGJIT_LISTENERS must be a JSON object/],
      [{ LGJIT_LISTENERS: "{" }, /^LGJIT_LISTENERS is not JSON/],
      [{ LGJIT_LISTENERS: '{"kb":"15432"}' }, /^LGJIT_LISTENERS: connection "kb" has port "15432"/],
      [{ LGJIT_LOG_LEVEL: "verbose" }, /^LGJIT_LOG_LEVEL "verbose" is not one of fatal, error/],
    ];
    for (const [overrides, expected] of cases) {
      assert.match(refusal(overrides), expected);
    }
  });
});
