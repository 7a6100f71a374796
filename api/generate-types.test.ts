import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";
import { crdDir, generatedFile, generateTypes } from "./generate-types.ts";

test("the committed API types match the CRD YAML (run `make generate` when this fails)", () => {
  assert.equal(readFileSync(generatedFile, "utf8"), generateTypes());
});

test("fields with a schema default are required in the generated types", () => {
  const types = generateTypes();
  assert.match(types, /\n {2}maxDuration: string;/);
  assert.match(types, /\n {4}port: number;/);
  assert.match(types, /\n {2}reason\?: string;/);
});

/** The keywords of apiextensions.k8s.io/v1 JSONSchemaProps that the CRDs may use. */
const schemaKeywords = new Set([
  "type",
  "format",
  "description",
  "properties",
  "items",
  "required",
  "enum",
  "default",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "minItems",
  "maxItems",
  "pattern",
  "additionalProperties",
  "nullable",
  "oneOf",
  "anyOf",
  "allOf",
  "not",
  "example",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "uniqueItems",
  "minProperties",
  "maxProperties",
  "title",
  "x-kubernetes-validations",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-int-or-string",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
  "x-kubernetes-embedded-resource",
]);

test("every CRD schema node uses only schema keywords (a stray comma in a flow mapping makes a field the API server refuses to apply)", () => {
  const unknown: string[] = [];
  const visit = (node: Record<string, unknown>, path: string) => {
    for (const [key, value] of Object.entries(node)) {
      if (!schemaKeywords.has(key)) unknown.push(`${path}: ${JSON.stringify(key)}`);
      if (key === "properties")
        for (const [name, child] of Object.entries(
          value as Record<string, Record<string, unknown>>,
        ))
          visit(child, `${path}.${name}`);
      if (key === "items" || (key === "additionalProperties" && typeof value === "object"))
        visit(value as Record<string, unknown>, `${path}[]`);
    }
  };
  for (const file of readdirSync(crdDir).filter((name) => name.endsWith(".yaml"))) {
    const crd = parse(readFileSync(join(crdDir, file), "utf8"));
    for (const version of crd.spec.versions) visit(version.schema.openAPIV3Schema, file);
  }
  assert.deepEqual(unknown, []);
});
