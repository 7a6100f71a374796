import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { maxPathSegments, normalizePath } from "./request-path.ts";

function normalized(raw: string) {
  const result = normalizePath(raw);
  assert.ok(result.ok, `${raw} was refused: ${result.ok ? "" : result.reason}`);
  return result;
}

function refusal(raw: string): string {
  const result = normalizePath(raw);
  assert.ok(!result.ok, `${raw} was accepted as ${result.ok ? result.path : ""}`);
  return result.reason;
}

describe("normalizePath", () => {
  it("resolves dot-segments, encoded or not, before anything matches", () => {
    assert.equal(normalized("/v1/docs/../admin").path, "/v1/admin");
    assert.equal(normalized("/v1/docs/%2e%2e/admin").path, "/v1/admin");
    assert.equal(normalized("/v1/docs/%2E%2E/%2E/admin").path, "/v1/admin");
    assert.equal(normalized("/v1/./docs/.").path, "/v1/docs/");
    assert.equal(normalized("/../../etc/passwd").path, "/etc/passwd");
    assert.equal(normalized("/v1/docs/..").path, "/v1/");
  });

  it("drops duplicate slashes and keeps one trailing slash", () => {
    assert.equal(normalized("//v1///docs//").path, "/v1/docs/");
    assert.equal(normalized("/").path, "/");
    assert.equal(normalized("/v1/docs").path, "/v1/docs");
  });

  it("decodes percent-escapes for matching and re-encodes what the upstream receives", () => {
    const result = normalized("/v1/docs/a%20b/%C3%A9t%C3%A9/%41");
    assert.equal(result.path, "/v1/docs/a b/été/A");
    assert.equal(result.encoded, "/v1/docs/a%20b/%C3%A9t%C3%A9/A");
    assert.equal(normalized("/v1/a:b@c=e,f+g$h&i").encoded, "/v1/a:b@c=e,f+g$h&i");
    assert.equal(normalized("/v1/%23frag%3F").encoded, "/v1/%23frag%3F");
  });

  it("reads a raw UTF-8 path as Node hands it over (latin1, one character per byte)", () => {
    const latin1 = Buffer.from("/été", "utf8").toString("latin1");
    assert.equal(normalized(latin1).path, "/été");
  });

  it("refuses what would change shape after matching, naming the segment", () => {
    assert.match(refusal("/v1/docs%2F..%2Fadmin"), /docs%2F\.\.%2Fadmin.*slash/);
    assert.match(refusal("/v1/docs%5cadmin"), /backslash/);
    assert.match(refusal("/v1\\admin"), /backslash/);
    assert.match(refusal("/v1/%00"), /control/);
    assert.match(refusal("/v1/%zz"), /not valid percent-encoded/);
    assert.match(refusal("/v1/%C3%28"), /not valid percent-encoded UTF-8/);
    assert.match(refusal("v1/docs"), /does not start with \//);
    assert.match(refusal("*"), /does not start with \//);
  });

  it("gives a plain path back as it is, exactly as the full normalization would", () => {
    for (const raw of ["/", "/v1/docs/7", "/v1/docs/", "/a:b@c=e,f+g$h&i/~x-y_z!*'()"]) {
      assert.deepEqual(normalizePath(raw), { ok: true, path: raw, encoded: raw });
      const { path, encoded } = normalized(`/.${raw}`);
      assert.deepEqual([path, encoded], [raw, raw], `/.${raw} normalized differently`);
    }
  });

  it("refuses what some servers read differently: path parameters, double encoding, look-alike dots", () => {
    assert.match(refusal("/v1/docs/..;/admin"), /segment "\.\.;" holds ";", a path parameter/);
    assert.match(refusal("/v1/docs;jsessionid=1"), /holds ";"/);
    assert.match(refusal("/v1/docs/%3B/admin"), /segment "%3B" holds ";"/);
    assert.match(
      refusal("/v1/docs/%252e%252e/admin"),
      /segment "%252e%252e" is percent-encoded twice/,
    );
    assert.match(refusal("/v1/%25%32%65"), /percent-encoded twice/);
    // Fullwidth, small and one-dot-leader full stops fold (NFKC) into ".".
    for (const dots of ["%EF%BC%8E%EF%BC%8E", "%EF%B9%92%EF%B9%92", "%E2%80%A4%E2%80%A4"]) {
      assert.match(refusal(`/v1/docs/${dots}/admin`), /Unicode folds into "\.\."/);
    }
    assert.match(refusal("/v1/docs%EF%BC%8Fadmin"), /folds into "docs\/admin"/);
    // Other non-ASCII text is a path like any other.
    assert.equal(normalized("/v1/docs/%C3%A9t%C3%A9").path, "/v1/docs/été");
  });

  it("refuses paths with more segments than any API needs", () => {
    assert.match(refusal("/a".repeat(maxPathSegments + 1)), /more than 512 segments/);
    assert.ok(normalizePath("/a".repeat(maxPathSegments)).ok);
  });
});
