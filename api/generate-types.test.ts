import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { generatedFile, generateTypes } from "./generate-types.ts";

test("the committed API types match the CRD YAML (run `make generate` when this fails)", () => {
  assert.equal(readFileSync(generatedFile, "utf8"), generateTypes());
});

test("fields with a schema default are required in the generated types", () => {
  const types = generateTypes();
  assert.match(types, /\n {2}maxDuration: string;/);
  assert.match(types, /\n {4}port: number;/);
  assert.match(types, /\n {2}reason\?: string;/);
});
