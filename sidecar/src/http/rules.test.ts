import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { GrantClaim } from "../../../api/credentials.ts";
import { compileGlob, compileHttpPolicy } from "./rules.ts";

const segments = (path: string) => path.split("/").filter(Boolean);
const matches = (pattern: string, path: string) => compileGlob(pattern)(segments(path));

describe("path globs", () => {
  it("* matches exactly one segment, or characters within one", () => {
    assert.ok(matches("/v1/docs/*", "/v1/docs/42"));
    assert.ok(!matches("/v1/docs/*", "/v1/docs"));
    assert.ok(!matches("/v1/docs/*", "/v1/docs/42/raw"));
    assert.ok(matches("/v1/docs/*.json", "/v1/docs/a.json"));
    assert.ok(!matches("/v1/docs/*.json", "/v1/docs/a.jsonx"));
    assert.ok(matches("/v1/*/raw", "/v1/docs/raw"));
  });

  it("** matches any number of segments, none included", () => {
    assert.ok(matches("/v1/docs/**", "/v1/docs"));
    assert.ok(matches("/v1/docs/**", "/v1/docs/a/b/c"));
    assert.ok(!matches("/v1/docs/**", "/v1/admin"));
    assert.ok(matches("/**/raw", "/v1/docs/raw"));
    assert.ok(matches("/**", "/"));
    assert.ok(matches("/v1/**/b/**/d", "/v1/a/b/c/d"));
    assert.ok(!matches("/v1/**/b/**/d", "/v1/a/c/d"));
  });

  it("treats regex characters in patterns literally", () => {
    assert.ok(matches("/v1/(a+)", "/v1/(a+)"));
    assert.ok(!matches("/v1/(a+)", "/v1/aa"));
  });

  it("stays fast on many ** against a long path that does not match", () => {
    const path = `/${"a/".repeat(500)}z`;
    assert.ok(!matches("/**/a/**/a/**/a/**/b", path));
  });

  it("stays fast on many * within a segment against a long segment that does not match", () => {
    // Found by fuzzing: as a regex, this pattern took 15 s against the path below.
    const started = performance.now();
    assert.ok(!matches("/v1/*a*a*a*a*b", `/v1/${"a".repeat(200)}`));
    assert.ok(performance.now() - started < 250, "matching took more than 250 ms");
    assert.ok(matches("/v1/*a*a*a*a*b", "/v1/xaaaab"));
    assert.ok(matches("/v1/*.*.json", "/v1/a.b.json"));
    assert.ok(!matches("/v1/*.*.json", "/v1/a.json"));
    assert.ok(matches("/v1/ab*ba", "/v1/abba"));
    assert.ok(!matches("/v1/ab*ba", "/v1/aba"), "a prefix and a suffix may not overlap");
    assert.ok(matches("/v1/a**b", "/v1/ab"));
  });
});

describe("an HTTP grant's decisions", () => {
  const grant = (extra: Partial<GrantClaim> = {}): GrantClaim => ({
    connection: "kb-api",
    type: "http",
    actions: ["read"],
    ...extra,
  });

  it("maps methods to actions, and denies what the grant lacks", () => {
    const policy = compileHttpPolicy(grant());
    assert.deepEqual(policy.decide("GET", "/anything"), { allowed: true, rule: "actions read" });
    assert.equal(policy.decide("HEAD", "/").allowed, true);
    assert.equal(policy.decide("OPTIONS", "/").allowed, true);
    for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
      const decision = policy.decide(method, "/v1/docs");
      assert.ok(!decision.allowed);
      assert.equal(decision.reason, "ActionNotGranted");
      assert.match(decision.message, /needs "write" on connection "kb-api"/);
    }
  });

  it("never proxies methods outside read and write", () => {
    const policy = compileHttpPolicy(grant({ actions: ["read", "write"] }));
    for (const method of ["TRACE", "CONNECT", "PROPFIND", "get"]) {
      const decision = policy.decide(method, "/");
      assert.ok(!decision.allowed && decision.reason === "MethodNotAllowed", method);
    }
  });

  it("with rules, a request must match one by method and path", () => {
    const policy = compileHttpPolicy(
      grant({
        actions: ["read", "write"],
        http: {
          rules: [
            { methods: ["GET"], paths: ["/v1/docs/**"] },
            { methods: ["POST"], paths: ["/v1/search"] },
          ],
        },
      }),
    );
    assert.deepEqual(policy.decide("GET", "/v1/docs/7"), {
      allowed: true,
      rule: "GET /v1/docs/**",
    });
    assert.equal(policy.decide("POST", "/v1/search").allowed, true);
    const head = policy.decide("HEAD", "/v1/docs/7");
    assert.ok(!head.allowed && head.reason === "NoRuleMatched");
    const admin = policy.decide("GET", "/v1/admin");
    assert.ok(!admin.allowed);
    assert.match(admin.message, /no rule .* allows GET \/v1\/admin/);
    assert.equal(policy.decide("POST", "/v1/docs/7").allowed, false);
  });

  it("marks an action the grant holds for approval as held, once the rules allow it", () => {
    const policy = compileHttpPolicy(
      grant({
        actions: ["read", "write"],
        http: { rules: [{ methods: ["GET", "DELETE"], paths: ["/v1/docs/*"] }] },
        approval: {
          actions: ["write"],
          approvers: [{ kind: "Group", name: "security" }],
          approvals: 1,
          timeout: "10m",
        },
      }),
    );
    const read = policy.decide("GET", "/v1/docs/7");
    assert.ok(read.allowed && read.held === undefined);
    const write = policy.decide("DELETE", "/v1/docs/7");
    assert.ok(write.allowed);
    assert.equal(write.held, "write");
    const outside = policy.decide("DELETE", "/v1/admin");
    assert.ok(!outside.allowed, "approval is never a way around the rules");
    assert.equal(outside.reason, "NoRuleMatched");
  });
});
