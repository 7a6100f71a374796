import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { describe, it } from "node:test";
import {
  dynamicRoleName,
  generateRolePassword,
  isRunRoleName,
  type PostgresAdmin,
  parseRunRoleComment,
  postgresClientConfig,
  runRoleComment,
  scramVerifier,
} from "./postgres-roles.ts";

const run = {
  namespace: "agents",
  name: "kb-refresh-2026-11-28",
  uid: "3f2b9c4e-8a1d-4f6e-9b7a-0c5d2e1f4a3b",
};

describe("dynamic role names", () => {
  it("are deterministic for a run and connection", () => {
    assert.equal(dynamicRoleName(run, "kb-postgres"), dynamicRoleName({ ...run }, "kb-postgres"));
  });

  it("trace the run: prefix, a piece of its name and of its uid", () => {
    const name = dynamicRoleName(run, "kb-postgres");
    assert.match(name, /^lgjit_kb_refresh_2026_11_28_3f2b9c4e_[0-9a-f]{10}$/);
    assert.ok(isRunRoleName(name));
  });

  it("differ per connection, uid, namespace and name", () => {
    const names = new Set([
      dynamicRoleName(run, "kb-postgres"),
      dynamicRoleName(run, "kb-postgres-replica"),
      dynamicRoleName({ ...run, uid: "3f2b9c4e-0000-0000-0000-000000000000" }, "kb-postgres"),
      dynamicRoleName({ ...run, namespace: "other" }, "kb-postgres"),
      dynamicRoleName({ ...run, name: "kb-refresh-2026-11-29" }, "kb-postgres"),
    ]);
    assert.equal(names.size, 5);
  });

  it("stay under 63 bytes and distinct for long names that share a prefix", () => {
    const long = "a".repeat(240);
    const first = dynamicRoleName({ ...run, name: `${long}-1` }, "kb-postgres");
    const second = dynamicRoleName({ ...run, name: `${long}-2` }, "kb-postgres");
    assert.notEqual(first, second);
    for (const name of [first, second]) {
      assert.ok(Buffer.byteLength(name) < 63, `${name} is ${Buffer.byteLength(name)} bytes`);
      assert.ok(isRunRoleName(name));
    }
  });

  it("use only lowercase letters, digits and underscores whatever the input", () => {
    const name = dynamicRoleName(
      { namespace: "Ä.ns", name: "--Ünïcödé.Run__NAME--", uid: "UID-ÄÖ" },
      "Kb.Postgres",
    );
    assert.match(name, /^lgjit_[a-z0-9_]+$/);
    assert.ok(!name.includes("__"), name);
    assert.match(dynamicRoleName({ ...run, name: "---" }, "kb"), /^lgjit_run_3f2b9c4e_/);
  });

  it("recognises only names the operator could mint", () => {
    assert.ok(isRunRoleName("lgjit_x_1_abc"));
    for (const name of ["kb_owner", "postgres", "LGJIT_x", "lgjit_X", `lgjit_${"a".repeat(58)}`])
      assert.equal(isRunRoleName(name), false, name);
  });
});

describe("role passwords", () => {
  it("are 32 random bytes in base64url", () => {
    const password = generateRolePassword();
    assert.match(password, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(password, generateRolePassword());
  });

  it("become a SCRAM-SHA-256 verifier that checks the RFC 7677 exchange", async () => {
    const salt = Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64");
    const verifier = await scramVerifier("pencil", salt);
    const match = /^SCRAM-SHA-256\$4096:([^$]+)\$([^:]+):(.+)$/.exec(verifier);
    assert.ok(match, verifier);
    const storedKey = Buffer.from(match[2] as string, "base64");
    const serverKey = Buffer.from(match[3] as string, "base64");
    const nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const authMessage = `n=user,r=rOprNGfwEbeRWgbNEkqO,r=${nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=${nonce}`;
    const hmac = (key: Buffer) => createHmac("sha256", key).update(authMessage).digest();
    // The server's check of the client's proof, and the signature it proves itself with.
    const proof = Buffer.from("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "base64");
    const signature = hmac(storedKey);
    const clientKey = Buffer.from(proof.map((byte, i) => byte ^ (signature[i] as number)));
    assert.deepEqual(createHash("sha256").update(clientKey).digest(), storedKey);
    assert.equal(
      hmac(serverKey).toString("base64"),
      "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
  });

  it("refuses passwords SASLprep would change", async () => {
    await assert.rejects(scramVerifier("pässword"), /printable ASCII/);
    await assert.rejects(scramVerifier(""), /printable ASCII/);
  });
});

describe("role comments", () => {
  it("round-trip the run and connection", () => {
    const comment = runRoleComment(run, "kb-postgres");
    assert.deepEqual(parseRunRoleComment(JSON.stringify(comment)), comment);
  });

  it("ignore comments the operator did not write", () => {
    for (const text of [
      null,
      "",
      "not json",
      "[]",
      '{"run":{"namespace":"a","name":"b","uid":"c"},"connection":"d"}',
      '{"managedBy":"langgraph-jit","run":{"name":"b","uid":"c"},"connection":"d"}',
    ])
      assert.equal(parseRunRoleComment(text), undefined, String(text));
  });
});

describe("admin connection TLS", () => {
  const admin: PostgresAdmin = {
    host: "kb.db.svc",
    port: 5432,
    database: "kb",
    sslMode: "verify-full",
    caPem: "-----BEGIN CERTIFICATE-----\n…",
    username: "kb_admin",
    password: "secret",
  };

  it("verify-full checks the chain against the CA and the host name", () => {
    const { ssl } = postgresClientConfig(admin);
    assert.deepEqual(ssl, { rejectUnauthorized: true, ca: admin.caPem, servername: "kb.db.svc" });
  });

  it("verify-full without a CA uses the system's, and an IP host is checked as an IP", () => {
    const { ssl } = postgresClientConfig({ ...admin, host: "10.0.0.5", caPem: undefined });
    assert.deepEqual(ssl, { rejectUnauthorized: true });
  });

  it("require encrypts; with a CA it checks the chain but not the host name, as libpq does", () => {
    assert.deepEqual(postgresClientConfig({ ...admin, sslMode: "require", caPem: undefined }).ssl, {
      rejectUnauthorized: false,
    });
    const ssl = postgresClientConfig({ ...admin, sslMode: "require" }).ssl;
    assert.ok(typeof ssl === "object");
    assert.equal(ssl.ca, admin.caPem);
    assert.notEqual(ssl.rejectUnauthorized, false);
    assert.equal(ssl.checkServerIdentity?.("other.host", {} as never), undefined);
  });

  it("disable sends plain text", () => {
    assert.equal(postgresClientConfig({ ...admin, sslMode: "disable" }).ssl, false);
  });
});
