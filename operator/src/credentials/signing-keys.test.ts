import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import {
  generateSigningKey,
  MalformedKeyDocumentError,
  needsRotation,
  parseKeyDocument,
  retireKeys,
  type SigningKey,
  serializeKeyDocument,
} from "./signing-keys.ts";

const hourMs = 60 * 60 * 1000;

async function expectMalformed(document: unknown, problem: RegExp): Promise<void> {
  const text = typeof document === "string" ? document : JSON.stringify(document);
  await assert.rejects(parseKeyDocument(text), (error: unknown) => {
    assert.ok(error instanceof MalformedKeyDocumentError, String(error));
    assert.match(error.message, problem);
    return true;
  });
}

function keyCreatedAt(key: SigningKey, createdAt: Date): SigningKey {
  return { ...key, createdAt: createdAt.toISOString() };
}

describe("signing key document", () => {
  let key: SigningKey;
  let other: SigningKey;
  before(async () => {
    key = await generateSigningKey(new Date("2026-11-28T10:00:00Z"));
    other = await generateSigningKey(new Date("2026-11-29T10:00:00Z"));
  });

  it("generates a P-256 key named by its RFC 7638 thumbprint", async () => {
    assert.equal(key.createdAt, "2026-11-28T10:00:00.000Z");
    assert.deepEqual(Object.keys(key.publicJwk).sort(), ["crv", "kty", "x", "y"]);
    assert.deepEqual(Object.keys(key.privateJwk).sort(), ["crv", "d", "kty", "x", "y"]);
    assert.equal(key.publicJwk.crv, "P-256");
    assert.match(key.kid, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(key.kid, other.kid);
  });

  it("round-trips through its serialized form, newest first", async () => {
    const parsed = await parseKeyDocument(serializeKeyDocument([key, other]));
    assert.deepEqual(
      parsed.map((k) => k.kid),
      [other.kid, key.kid],
    );
    assert.deepEqual(parsed[1], key);
  });

  it("rejects a document that is not JSON", () =>
    expectMalformed("{not json", /^it is not JSON \(/));

  it("rejects a document that is not a list", () =>
    expectMalformed({ keys: [] }, /it is an object, not a list of keys/));

  it("rejects an entry that is not an object", () =>
    expectMalformed([key, "k2"], /keys\[1\] is a string, not an object/));

  it("rejects a missing kid", () =>
    expectMalformed([{ ...key, kid: undefined }], /keys\[0\]\.kid is missing/));

  it("rejects a createdAt that is not RFC 3339", async () => {
    await expectMalformed(
      [{ ...key, createdAt: "yesterday" }],
      /keys\[0\]\.createdAt "yesterday" is not an RFC 3339 timestamp/,
    );
    await expectMalformed(
      [{ ...key, createdAt: "2026-11-28 10:00" }],
      /keys\[0\]\.createdAt .* is not an RFC 3339/,
    );
  });

  it("rejects a key that is not EC P-256", () =>
    expectMalformed(
      [{ ...key, publicJwk: { ...key.publicJwk, crv: "P-384" } }],
      /keys\[0\]\.publicJwk is not an EC P-256 key \(kty "EC", crv "P-384"\)/,
    ));

  it("rejects a private key without d", () =>
    expectMalformed(
      [{ ...key, privateJwk: key.publicJwk }],
      /keys\[0\]\.privateJwk\.d is missing or not a 32-byte base64url value/,
    ));

  it("rejects a public key that carries the private key", () =>
    expectMalformed(
      [{ ...key, publicJwk: key.privateJwk }],
      /keys\[0\]\.publicJwk holds a private key/,
    ));

  it("rejects a public key from a different pair", () =>
    expectMalformed(
      [{ ...key, publicJwk: other.publicJwk }],
      /keys\[0\]\.privateJwk and publicJwk are different keys/,
    ));

  it("rejects a kid that is not the thumbprint", () =>
    expectMalformed([{ ...key, kid: other.kid }], /keys\[0\]\.kid ".*" is not the thumbprint/));

  it("rejects a private key whose d does not match its public point", () =>
    expectMalformed(
      [{ ...key, privateJwk: { ...key.privateJwk, d: other.privateJwk.d } }],
      /keys\[0\]\.privateJwk is not a usable P-256 key/,
    ));

  it("rejects the same key twice", () =>
    expectMalformed([other, key, key], /keys\[2\]\.kid ".*" appears twice/));
});

describe("signing key rotation and retirement", () => {
  const now = new Date("2026-11-28T12:00:00Z");
  const ago = (ms: number) => new Date(now.getTime() - ms);
  let keys: SigningKey[];
  before(async () => {
    keys = await Promise.all([generateSigningKey(), generateSigningKey(), generateSigningKey()]);
  });

  it("rotates when there is no key", () => {
    assert.equal(needsRotation([], now, 24 * hourMs), true);
  });

  it("rotates once the newest key is rotateAfterMs old, judging only the newest", () => {
    const [a, b] = keys as [SigningKey, SigningKey];
    const older = keyCreatedAt(b, ago(100 * hourMs));
    assert.equal(
      needsRotation([keyCreatedAt(a, ago(23 * hourMs)), older], now, 24 * hourMs),
      false,
    );
    assert.equal(needsRotation([keyCreatedAt(a, ago(24 * hourMs)), older], now, 24 * hourMs), true);
  });

  it("rotates on every call with rotateAfterMs 0", () => {
    assert.equal(needsRotation([keyCreatedAt(keys[0] as SigningKey, now)], now, 0), true);
  });

  it("does not rotate a key created in the future (clock skew between replicas)", () => {
    const future = keyCreatedAt(keys[0] as SigningKey, new Date(now.getTime() + hourMs));
    assert.equal(needsRotation([future], now, 24 * hourMs), false);
  });

  it("retires keys older than retireAfterMs and keeps the rest in order", () => {
    const [a, b, c] = keys as [SigningKey, SigningKey, SigningKey];
    const current = [
      keyCreatedAt(a, ago(1 * hourMs)),
      keyCreatedAt(b, ago(48 * hourMs)),
      keyCreatedAt(c, ago(49 * hourMs)),
    ];
    assert.deepEqual(
      retireKeys(current, now, 48 * hourMs).map((k) => k.kid),
      [a.kid, b.kid],
    );
  });

  it("always keeps the newest key, however old", () => {
    const [a, b] = keys as [SigningKey, SigningKey];
    const current = [keyCreatedAt(a, ago(90 * hourMs)), keyCreatedAt(b, ago(100 * hourMs))];
    assert.deepEqual(
      retireKeys(current, now, 48 * hourMs).map((k) => k.kid),
      [a.kid],
    );
  });
});
