// The operator replicas' shared run-token signing keys, against the real test cluster.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import { base64url, createLocalJWKSet, decodeProtectedHeader, errors, jwtVerify } from "jose";
import { pino } from "pino";
import {
  generateSigningKey,
  keyDocumentKey,
  MalformedKeyDocumentError,
  parseKeyDocument,
  type SigningKey,
  SigningKeys,
  serializeKeyDocument,
} from "../../operator/src/credentials/signing-keys.ts";
import { createTestNamespace, eventually, kubeConfigFor } from "../lib/cluster.ts";

const core = kubeConfigFor("admin").makeApiClient(CoreV1Api);
const logger = pino({ level: process.env.LOG_LEVEL ?? "silent" });
const secretName = "lgjit-signing-keys";
const hourMs = 60 * 60 * 1000;

function replica(namespace: string, rotateAfterMs?: number): SigningKeys {
  return new SigningKeys({ core, namespace, secretName, logger, rotateAfterMs });
}

async function storedKeys(namespace: string): Promise<SigningKey[]> {
  const secret = await core.readNamespacedSecret({ name: secretName, namespace });
  const encoded = secret.data?.[keyDocumentKey] ?? "";
  return parseKeyDocument(Buffer.from(encoded, "base64").toString("utf8"));
}

async function plant(namespace: string, document: string): Promise<void> {
  await core.createNamespacedSecret({
    namespace,
    body: {
      metadata: { name: secretName },
      type: "Opaque",
      data: { [keyDocumentKey]: Buffer.from(document).toString("base64") },
    },
  });
}

function newestKid(keys: SigningKeys): string | undefined {
  return keys.jwks().keys[0]?.kid;
}

const tokenOptions = () => ({
  issuer: "https://lgjit-operator.lgjit-system.svc",
  audience: "lgjit-sidecar",
  subject: "agents/kb-refresh",
  expiresAt: new Date(Date.now() + 10 * 60 * 1000),
  jti: `run-${Date.now()}`,
});

describe("signing keys shared by operator replicas", () => {
  let namespace: Awaited<ReturnType<typeof createTestNamespace>>;
  before(async () => {
    namespace = await createTestNamespace("signing-keys");
  });
  after(async () => {
    await namespace?.remove();
  });

  it("converges concurrent replicas on one Secret and one signing key", async () => {
    const replicas = [replica(namespace.name), replica(namespace.name), replica(namespace.name)];
    await Promise.all(replicas.map((keys) => keys.ensure()));

    const secret = await core.readNamespacedSecret({ name: secretName, namespace: namespace.name });
    assert.equal(secret.type, "Opaque");
    const stored = await storedKeys(namespace.name);
    assert.equal(stored.length, 1, "one key, whichever replica created it");
    for (const keys of replicas) {
      assert.equal(newestKid(keys), stored[0]?.kid);
    }
  });

  it("leaves the Secret untouched when no key is due", async () => {
    await replica(namespace.name).ensure();
    const before = await core.readNamespacedSecret({ name: secretName, namespace: namespace.name });
    await replica(namespace.name).ensure();
    const after = await core.readNamespacedSecret({ name: secretName, namespace: namespace.name });
    assert.equal(after.metadata?.resourceVersion, before.metadata?.resourceVersion);
  });

  it("shows one replica's rotation to another, and earlier tokens still verify", async () => {
    const signer = replica(namespace.name);
    const verifier = replica(namespace.name);
    await Promise.all([signer.ensure(), verifier.ensure()]);
    const options = tokenOptions();
    const early = await signer.sign({}, options);
    const earlyKid = decodeProtectedHeader(early).kid;

    const rotator = replica(namespace.name, 0);
    await rotator.ensure();
    const rotatedKid = newestKid(rotator);
    assert.notEqual(rotatedKid, earlyKid);
    assert.equal(newestKid(verifier), earlyKid, "not seen before the verifier re-reads");

    await verifier.ensure();
    assert.deepEqual(
      verifier.jwks().keys.map((jwk) => jwk.kid),
      [rotatedKid, earlyKid],
    );
    const { payload } = await jwtVerify(early, createLocalJWKSet(verifier.jwks()), {
      issuer: options.issuer,
      audience: options.audience,
    });
    assert.equal(payload.jti, options.jti);

    await signer.ensure();
    const late = await signer.sign({}, tokenOptions());
    assert.equal(decodeProtectedHeader(late).kid, rotatedKid, "signs with the new key");
    await jwtVerify(late, createLocalJWKSet(verifier.jwks()));
  });

  it("lets a watching replica pick up a rotation on its own", async () => {
    const watcher = replica(namespace.name);
    await watcher.ensure();
    const stop = watcher.watch(100);
    try {
      const rotator = replica(namespace.name, 0);
      await rotator.ensure();
      const rotatedKid = newestKid(rotator);
      await eventually(
        "the watcher to see the rotated key",
        async () => newestKid(watcher) === rotatedKid,
      );
    } finally {
      stop();
    }
  });

  it("rotates an aged key once when replicas race to rotate it", async () => {
    const scratch = await createTestNamespace("signing-keys-race");
    try {
      const aged = await generateSigningKey(new Date(Date.now() - 25 * hourMs));
      await plant(scratch.name, serializeKeyDocument([aged]));
      const replicas = [replica(scratch.name), replica(scratch.name), replica(scratch.name)];
      await Promise.all(replicas.map((keys) => keys.ensure()));

      const stored = await storedKeys(scratch.name);
      assert.deepEqual(
        stored.slice(1).map((key) => key.kid),
        [aged.kid],
        "exactly one new key, ahead of the aged one",
      );
      for (const keys of replicas) {
        assert.deepEqual(
          keys.jwks().keys.map((jwk) => jwk.kid),
          stored.map((key) => key.kid),
        );
      }
    } finally {
      await scratch.remove();
    }
  });

  it("drops a key older than retireAfterMs from the Secret and the JWKS", async () => {
    const scratch = await createTestNamespace("signing-keys-retire");
    try {
      const newest = await generateSigningKey(new Date(Date.now() - 60 * hourMs));
      const retired = await generateSigningKey(new Date(Date.now() - 90 * hourMs));
      await plant(scratch.name, serializeKeyDocument([newest, retired]));
      const keys = new SigningKeys({
        core,
        namespace: scratch.name,
        secretName,
        logger,
        rotateAfterMs: 70 * hourMs,
        retireAfterMs: 80 * hourMs,
      });
      await keys.ensure();
      assert.deepEqual(
        (await storedKeys(scratch.name)).map((key) => key.kid),
        [newest.kid],
      );
      assert.deepEqual(
        keys.jwks().keys.map((jwk) => jwk.kid),
        [newest.kid],
      );
    } finally {
      await scratch.remove();
    }
  });

  it("reports a malformed Secret by name and leaves it as it is", async () => {
    const scratch = await createTestNamespace("signing-keys-bad");
    try {
      await plant(scratch.name, "this is not JSON");
      const before = await core.readNamespacedSecret({ name: secretName, namespace: scratch.name });

      await assert.rejects(replica(scratch.name).ensure(), (error: unknown) => {
        assert.ok(error instanceof MalformedKeyDocumentError, String(error));
        assert.match(
          error.message,
          new RegExp(
            `^signing key Secret ${scratch.name}/${secretName} has a malformed "keys\\.json": ` +
              "it is not JSON",
          ),
        );
        return true;
      });
      const after = await core.readNamespacedSecret({ name: secretName, namespace: scratch.name });
      assert.equal(after.metadata?.resourceVersion, before.metadata?.resourceVersion);
      assert.deepEqual(after.data, before.data);
    } finally {
      await scratch.remove();
    }
  });
});

describe("signing and verifying run tokens", () => {
  let namespace: Awaited<ReturnType<typeof createTestNamespace>>;
  let secrets = 0;
  before(async () => {
    namespace = await createTestNamespace("run-tokens");
  });
  after(async () => {
    await namespace?.remove();
  });
  // Each test gets its own Secret, so their rotations do not meet.
  const fresh = (options: { rotateAfterMs?: number; retireAfterMs?: number } = {}) => {
    const name = `run-token-keys-${++secrets}`;
    const keys = new SigningKeys({
      core,
      namespace: namespace.name,
      secretName: name,
      logger,
      ...options,
    });
    return { keys, name };
  };

  it("refuses a retirement that does not outlast rotation", () => {
    assert.throws(
      () => fresh({ rotateAfterMs: hourMs, retireAfterMs: hourMs }),
      /retireAfterMs 3600000 must exceed rotateAfterMs 3600000/,
    );
  });

  it("refuses to sign before a key is loaded", async () => {
    await assert.rejects(fresh().keys.sign({}, tokenOptions()), /ensure\(\) has not succeeded/);
  });

  it("signs a token that verifies against its JWKS with every claim, and no private key is published", async () => {
    const { keys } = fresh();
    await keys.ensure();
    const options = tokenOptions();
    const token = await keys.sign({ run: "kb-refresh", iss: "forged" }, options);
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(keys.jwks()), {
      issuer: options.issuer,
      audience: options.audience,
      algorithms: ["ES256"],
    });
    assert.deepEqual(protectedHeader, { alg: "ES256", kid: newestKid(keys), typ: "JWT" });
    assert.equal(payload.iss, options.issuer, "the issuer option wins over a claim");
    assert.equal(payload.sub, options.subject);
    assert.equal(payload.aud, options.audience);
    assert.equal(payload.jti, options.jti);
    assert.equal(payload.run, "kb-refresh");
    assert.equal(payload.exp, Math.floor(options.expiresAt.getTime() / 1000));
    assert.equal(
      keys.jwks().keys.some((jwk) => "d" in jwk),
      false,
    );
  });

  it("refuses an expiry in the past or within the current second", async () => {
    const { keys } = fresh();
    await keys.ensure();
    for (const expiresAt of [
      new Date(Date.now() - 1000),
      new Date(Math.floor(Date.now() / 1000) * 1000),
    ]) {
      await assert.rejects(
        keys.sign({}, { ...tokenOptions(), expiresAt }),
        /is not in the future: refusing to sign/,
      );
    }
    await assert.rejects(
      keys.sign({}, { ...tokenOptions(), expiresAt: new Date(Number.NaN) }),
      /not a valid date/,
    );
  });

  it("rejects a token whose payload was tampered with", async () => {
    const { keys } = fresh();
    await keys.ensure();
    const token = await keys.sign({}, tokenOptions());
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload)));
    const forged = base64url.encode(JSON.stringify({ ...claims, sub: "agents/other-run" }));
    await assert.rejects(
      jwtVerify(`${header}.${forged}.${signature}`, createLocalJWKSet(keys.jwks())),
      errors.JWSSignatureVerificationFailed,
    );
  });

  it("verifies tokens of a superseded key until it retires, then no longer", async () => {
    const { keys, name } = fresh({ rotateAfterMs: 0, retireAfterMs: 1_000 });
    await keys.ensure();
    const first = await keys.sign({}, tokenOptions());
    const firstKid = decodeProtectedHeader(first).kid;
    await keys.ensure();
    const kids = keys.jwks().keys.map((jwk) => jwk.kid);
    assert.equal(kids.length, 2);
    assert.notEqual(kids[0], firstKid, "a new key signs from now on");
    await jwtVerify(first, createLocalJWKSet(keys.jwks()));
    assert.equal(decodeProtectedHeader(await keys.sign({}, tokenOptions())).kid, kids[0]);

    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await keys.ensure();
    assert.equal(
      keys.jwks().keys.some((jwk) => jwk.kid === firstKid),
      false,
      "the first key retired",
    );
    const stored = await core.readNamespacedSecret({ name, namespace: namespace.name });
    const document = Buffer.from(stored.data?.[keyDocumentKey] ?? "", "base64").toString("utf8");
    assert.equal(
      (await parseKeyDocument(document)).some((k) => k.kid === firstKid),
      false,
    );
    await assert.rejects(
      jwtVerify(first, createLocalJWKSet(keys.jwks())),
      errors.JWKSNoMatchingKey,
    );
  });
});
