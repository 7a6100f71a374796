// The operator trusts no phase, deadline or Job it did not decide itself (invariant 8).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import type { V1Job } from "@kubernetes/client-node";
import type { LangGraphRun } from "../../../api/v1alpha1.ts";
import { isRunJob, StatusSeal } from "./status-seal.ts";

const seal = new StatusSeal(randomBytes(32));

function running(changes: Partial<NonNullable<LangGraphRun["status"]>> = {}): LangGraphRun {
  const status = {
    phase: "Running" as const,
    startedAt: "2026-12-04T10:00:00Z",
    deadline: "2026-12-04T10:30:00Z",
  };
  const run: LangGraphRun = {
    metadata: { name: "r", namespace: "agents", uid: "run-1" },
    spec: { template: {}, access: [], maxDuration: "30m" },
    status: { ...status, seal: seal.ofStatus("run-1", status) },
  };
  run.status = { ...run.status, ...changes };
  return run;
}

function job(annotations: Record<string, string>, uid = "job-1", owner = "run-1"): V1Job {
  return {
    metadata: {
      name: "r",
      uid,
      annotations,
      ownerReferences: [
        {
          apiVersion: "langgraph-jit.dev/v1alpha1",
          kind: "LangGraphRun",
          name: "r",
          uid: owner,
          controller: true,
        },
      ],
    },
  };
}

describe("StatusSeal", () => {
  it("trusts a Running status the operator sealed", () => {
    assert.equal(seal.statusIsTrusted(running()), true);
  });

  it("does not trust Running set by hand, or a deadline moved by hand", () => {
    assert.equal(seal.statusIsTrusted(running({ seal: undefined })), false);
    assert.equal(seal.statusIsTrusted(running({ deadline: "2026-12-05T10:30:00Z" })), false);
    assert.equal(seal.statusIsTrusted(running({ startedAt: "2026-12-04T11:00:00Z" })), false);
    assert.equal(seal.statusIsTrusted(running({ jobUID: "someone-elses" })), false);
    assert.equal(seal.statusIsTrusted(running({ phase: "AwaitingApproval" })), false);
  });

  it("does not trust another run's seal, nor one made with another key", () => {
    const other = running();
    if (other.metadata) other.metadata.uid = "run-2";
    assert.equal(seal.statusIsTrusted(other), false);
    assert.equal(new StatusSeal(randomBytes(32)).statusIsTrusted(running()), false);
  });

  it("needs no seal on phases that grant nothing", () => {
    for (const phase of [
      "Pending",
      "Denied",
      "Succeeded",
      "Failed",
      "Expired",
      "Cancelled",
    ] as const) {
      assert.equal(seal.statusIsTrusted(running({ phase, seal: undefined })), true, phase);
    }
  });

  it("refuses a key too short to be one", () => {
    assert.throws(() => new StatusSeal(randomBytes(8)), /at least 32 bytes/);
  });
});

describe("isRunJob", () => {
  const run = running();
  const sealed = { "langgraph-jit.dev/seal": seal.ofJob(run, "r") };

  it("takes the sealed Job before its uid is recorded, and then only that uid", () => {
    assert.equal(isRunJob(run, job(sealed), seal), true);
    const recorded = running({ jobUID: "job-1" });
    assert.equal(isRunJob(recorded, job(sealed), seal), true);
    assert.equal(
      isRunJob(recorded, job(sealed, "job-2"), seal),
      false,
      "a copy of the seal on a new Job",
    );
  });

  it("never takes a Job someone else made under the run's name", () => {
    assert.equal(isRunJob(run, job({}), seal), false);
    assert.equal(isRunJob(run, job({ "langgraph-jit.dev/seal": "v1.forged" }), seal), false);
    assert.equal(isRunJob(run, job(sealed, "job-1", "other-run"), seal), false);
  });
});
