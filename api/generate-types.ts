// Generates TypeScript types from the CRD YAML in crds/, the API's one source of truth.
// `make generate` rewrites v1alpha1.generated.ts; a unit test fails when it is stale.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";

interface Schema {
  type?: string;
  description?: string;
  enum?: unknown[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: Schema | boolean;
  default?: unknown;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
}

interface CustomResourceDefinition {
  spec: {
    group: string;
    names: { kind: string };
    versions: { name: string; schema: { openAPIV3Schema: Schema } }[];
  };
}

const repoRoot = join(import.meta.dirname, "..");
export const crdDir = join(repoRoot, "crds");
export const generatedFile = join(import.meta.dirname, "v1alpha1.generated.ts");
const version = "v1alpha1";

/** Schema paths typed by the Kubernetes client's own models instead of the partial schema. */
const clientTypes: Record<string, string> = {
  metadata: "V1ObjectMeta",
  "spec.template": "V1PodTemplateSpec",
  "status.conditions": "Condition[]",
};

function typeOf(schema: Schema, path: string, indent: string): string {
  const known = clientTypes[path];
  if (known) return known;
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(" | ");
  switch (schema.type) {
    case "string":
      return "string";
    case "integer":
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "array":
      return `Array<${typeOf(schema.items ?? {}, `${path}[]`, indent)}>`;
    case "object":
      if (schema.properties) return objectType(schema, path, indent);
      if (typeof schema.additionalProperties === "object") {
        return `Record<string, ${typeOf(schema.additionalProperties, `${path}{}`, indent)}>`;
      }
      return "Record<string, unknown>";
    default:
      return "unknown";
  }
}

function docComment(description: string | undefined, indent: string): string {
  if (!description) return "";
  return `${indent}/** ${description.replaceAll("*/", "* /").replace(/\s+/g, " ").trim()} */\n`;
}

// Fields with a schema default are always present once the API server admitted the object.
function objectType(schema: Schema, path: string, indent: string): string {
  const inner = `${indent}  `;
  const required = new Set(schema.required ?? []);
  const fields = Object.entries(schema.properties ?? {}).map(([name, property]) => {
    const childPath = path ? `${path}.${name}` : name;
    const optional = required.has(name) || property.default !== undefined ? "" : "?";
    return `${docComment(property.description, inner)}${inner}${name}${optional}: ${typeOf(property, childPath, inner)};\n`;
  });
  return `{\n${fields.join("")}${indent}}`;
}

export function generateTypes(): string {
  const kinds = readdirSync(crdDir)
    .filter((file) => file.endsWith(".yaml"))
    .sort()
    .map((file) => parse(readFileSync(join(crdDir, file), "utf8")) as CustomResourceDefinition);
  let out =
    "// Generated from crds/*.yaml by api/generate-types.ts: do not edit, run `make generate`.\n" +
    'import type { V1ObjectMeta, V1PodTemplateSpec } from "@kubernetes/client-node";\n' +
    'import type { Condition } from "./condition.ts";\n';
  for (const crd of kinds) {
    const kind = crd.spec.names.kind;
    const served = crd.spec.versions.find((v) => v.name === version);
    if (!served) throw new Error(`CRD for ${kind} has no version ${version}`);
    const root = served.schema.openAPIV3Schema;
    const { apiVersion: _a, kind: _k, ...fields } = root.properties ?? {};
    out += `\n${docComment(root.description, "")}export interface ${kind} {\n`;
    out += `  apiVersion?: "${crd.spec.group}/${version}";\n  kind?: "${kind}";\n`;
    for (const name of Object.keys(fields)) {
      const optional = (root.required ?? []).includes(name) ? "" : "?";
      const typeName = name === "metadata" ? clientTypes.metadata : `${kind}${capitalize(name)}`;
      out += `  ${name}${optional}: ${typeName};\n`;
    }
    out += "}\n";
    for (const [name, property] of Object.entries(fields)) {
      if (name === "metadata") continue;
      out += `\nexport type ${kind}${capitalize(name)} = ${typeOf(property, name, "")};\n`;
    }
  }
  return out;
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

if (import.meta.main) {
  writeFileSync(generatedFile, generateTypes());
  console.log(`wrote ${generatedFile}`);
}
