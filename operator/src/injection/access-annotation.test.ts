import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AccessAnnotationError, parseAccessAnnotation } from "./access-annotation.ts";

const syntax =
  '; write it as "CONNECTION=ACTION[,ACTION]; ..." such as "kb-api=read; kb-postgres=read,write"';

function refused(text: string | undefined, why: string): void {
  assert.throws(
    () => parseAccessAnnotation(text),
    (error: unknown) => error instanceof AccessAnnotationError && error.message === why + syntax,
  );
}

describe("the access annotation", () => {
  it("reads each connection and its actions, in order", () => {
    assert.deepEqual(parseAccessAnnotation("kb-api=read; kb-postgres=read,write"), [
      { connection: "kb-api", actions: ["read"] },
      { connection: "kb-postgres", actions: ["read", "write"] },
    ]);
    assert.deepEqual(parseAccessAnnotation(" kb.db = read , ddl ;"), [
      { connection: "kb.db", actions: ["read", "ddl"] },
    ]);
  });

  it("refuses what is missing or empty", () => {
    for (const text of [undefined, "", "   "]) refused(text, "it is missing or empty");
  });

  it("refuses an entry that is not CONNECTION=ACTIONS, naming it", () => {
    refused("kb-api", 'entry 1 ("kb-api") is not CONNECTION=ACTIONS');
    refused("kb-api=read;;kb-db=read", 'entry 2 ("") is not CONNECTION=ACTIONS');
    refused("kb-api=read=write", 'entry 1 ("kb-api=read=write") is not CONNECTION=ACTIONS');
    refused("kb-api:read", 'entry 1 ("kb-api:read") is not CONNECTION=ACTIONS');
  });

  it("refuses a name that is not a Connection's, and one named twice", () => {
    refused("KB_API=read", 'entry 1 ("KB_API=read"): "KB_API" is not a Connection name');
    refused("=read", 'entry 1 ("=read"): "" is not a Connection name');
    refused(
      "kb-api=read; kb-api=write",
      'entry 2 ("kb-api=write"): connection "kb-api" is named twice',
    );
  });

  it("refuses an unknown, empty or repeated action", () => {
    refused(
      "kb-api=get",
      'entry 1 ("kb-api=get"): "get" is not an action (read, write, ddl, admin)',
    );
    refused("kb-api=", 'entry 1 ("kb-api="): "" is not an action (read, write, ddl, admin)');
    refused(
      "kb-api=read,",
      'entry 1 ("kb-api=read,"): "" is not an action (read, write, ddl, admin)',
    );
    refused("kb-api=read,read", 'entry 1 ("kb-api=read,read") names an action twice');
  });

  it("refuses more than a run may ask for", () => {
    const many = Array.from({ length: 65 }, (_, i) => `c${i}=read`).join(";");
    refused(many, "it names more than 64 connections");
    refused(`kb-api=read;${" ".repeat(5000)}`, "it is longer than 4096 characters");
  });
});
