import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { parse } from "yaml";
import { clusterConnectionsFile, generateClusterConnections } from "./generate-crds.ts";

test("the committed ClusterConnection CRD matches connections.yaml (run `make generate` when this fails)", () => {
  assert.equal(readFileSync(clusterConnectionsFile, "utf8"), generateClusterConnections());
});

test("a ClusterConnection is cluster-scoped, needs a namespaceSelector, and keeps a Connection's spec", () => {
  const crd = parse(generateClusterConnections());
  assert.equal(crd.spec.scope, "Cluster");
  const spec = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec;
  assert.deepEqual(spec.required, ["namespaceSelector"]);
  assert.deepEqual(Object.keys(spec.properties), ["namespaceSelector", "postgres", "http"]);
  assert.match(JSON.stringify(spec), /credentials namespace/);
  assert.doesNotMatch(JSON.stringify(spec), /same namespace|Connection's namespace/);
});
