// People from the company's identity provider: the cluster's Dex, trusted by the API server
// through an AuthenticationConfiguration (e2e/cluster/oidc-setup.ts). Requesters and approvers
// are stamped from OIDC identities with their prefix, policies name IdP groups, `kubectl jit`
// works through the exec credential helper, and the API server itself refuses the tokens it
// must not trust, before anything is created.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Agent, fetch } from "undici";
import type { AccessPolicy, Requester } from "../../api/v1alpha1.ts";
import { requesterOf } from "../../operator/src/runs/requester.ts";
import {
  kubernetesClientId,
  type OidcUserName,
  oidcGroup,
  oidcUsername,
  otherClientId,
} from "../cluster/dex-config.ts";
import { kubeConfigFor, kubectlJit } from "../lib/cluster.ts";
import {
  type ClusterProvider,
  clusterProvider,
  type DexProcess,
  type OidcIssuer,
  requestIdToken,
  startDex,
} from "../lib/dex.ts";
import { useOperator } from "../lib/operator.ts";
import { createObject, createRun, readRun, runManifest, waitForPhase } from "../lib/runs.ts";

const mlPlatform = { kind: "Group" as const, name: oidcGroup("ml-platform") };
const security = { kind: "Group" as const, name: oidcGroup("security") };

describe("OIDC users and groups from the cluster's Dex", () => {
  // A peer from the team and the security team must both say yes: two distinct approvers.
  const suite = useOperator("oidc", {
    runs: true,
    policy: {
      subjects: [mlPlatform],
      runApproval: { approvers: [mlPlatform, security], approvals: 2, timeout: "1h" },
    },
  });
  let provider: ClusterProvider;
  let api: { server: string; dispatcher: Agent };
  // Taken first, so that it has expired by the last test.
  let earlyToken: string;

  const tokenFor = (name: OidcUserName, clientId = kubernetesClientId, at: OidcIssuer = provider) =>
    requestIdToken(at, name, provider.passwords.get(name) ?? "", clientId);

  /** Creates a run as the bearer of `token`, as any client would: the API server's answer. */
  const createWithToken = async (token: string, name: string) => {
    const response = await fetch(
      `${api.server}/apis/langgraph-jit.dev/v1alpha1/namespaces/${suite.ns.name}/langgraphruns`,
      {
        method: "POST",
        dispatcher: api.dispatcher,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(runManifest(name)),
      },
    );
    return { status: response.status, body: (await response.json()) as { reason?: string } };
  };

  /** The API server's own 401, and no run of that name. */
  const assertRefused = async (token: string, name: string) => {
    const { status, body } = await createWithToken(token, name);
    assert.equal(status, 401, `${name}: ${JSON.stringify(body)}`);
    assert.equal(body.reason, "Unauthorized");
    assert.equal(await readRun(suite.ns.name, name), undefined, `${name} was created`);
  };

  before(async () => {
    provider = await clusterProvider();
    const cluster = kubeConfigFor("admin").getCurrentCluster();
    if (!cluster?.caData) throw new Error("the admin kubeconfig names no cluster CA");
    api = {
      server: cluster.server,
      dispatcher: new Agent({ connect: { ca: Buffer.from(cluster.caData, "base64") } }),
    };
    earlyToken = await tokenFor("alice");
    const early = await fetch(`${api.server}/apis/langgraph-jit.dev/v1alpha1/langgraphruns`, {
      dispatcher: api.dispatcher,
      headers: { authorization: `Bearer ${earlyToken}` },
    });
    assert.notEqual(early.status, 401, "alice's first token is accepted while it is fresh");
    await early.body?.cancel();
  });
  after(() => api?.dispatcher.destroy());

  it("stamps alice's verified e-mail and IdP groups, with the prefix, as the requester", async () => {
    const ns = suite.ns.name;
    await createRun("oidc/alice", ns, runManifest("peer-reviewed", { reason: "reindex" }));
    const run = await waitForPhase(ns, "peer-reviewed", "AwaitingApproval");
    const requester = requesterOf(run) as Requester;
    assert.equal(requester.username, "oidc:alice@example.com");
    assert.deepEqual(requester.groups, ["oidc:ml-platform", "system:authenticated"]);
    assert.ok(requester.uid, "the uid comes from the token's sub");
    assert.deepEqual(run.status?.requester, requester);
  });

  it("lets the approvers decide with kubectl jit, as the OIDC users they are", async () => {
    const ns = suite.ns.name;
    const listed = kubectlJit("oidc/bob", "approvals", "-n", ns);
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(
      listed.stdout,
      /peer-reviewed\s+oidc:alice@example\.com\s+0\/2\s+\d+s\s+run: reindex/,
    );

    const own = kubectlJit("oidc/alice", "approve", "peer-reviewed", "-n", ns, "--reason", "me");
    assert.equal(own.status, 1);
    assert.match(
      own.stderr,
      /oidc:alice@example\.com requested the run and may not decide its approval/,
    );
    const stranger = kubectlJit(
      "oidc/mallory",
      "approve",
      "peer-reviewed",
      "-n",
      ns,
      "--reason",
      "ok",
    );
    assert.equal(stranger.status, 1);
    assert.match(
      stranger.stderr,
      /oidc:mallory@example\.com is not among the run's approvers: Group oidc:ml-platform, Group oidc:security/,
    );
    // The certificate identity of the same name is another user, and group security is not
    // the IdP's: the prefix keeps them apart.
    const certificateBob = kubectlJit(
      "bob",
      "approve",
      "peer-reviewed",
      "-n",
      ns,
      "--reason",
      "ok",
    );
    assert.equal(certificateBob.status, 1);
    assert.match(certificateBob.stderr, /bob@example\.com is not among the run's approvers/);

    const carol = kubectlJit(
      "oidc/carol",
      "approve",
      "peer-reviewed",
      "-n",
      ns,
      "--reason",
      "LGTM",
    );
    assert.equal(carol.status, 0, carol.stderr);
    const afterCarol = kubectlJit("oidc/bob", "approvals", "-n", ns);
    assert.match(afterCarol.stdout, /peer-reviewed\s+oidc:alice@example\.com\s+1\/2/);
    const bob = kubectlJit("oidc/bob", "approve", "peer-reviewed", "-n", ns, "--reason", "fine");
    assert.equal(bob.status, 0, bob.stderr);

    const run = await waitForPhase(ns, "peer-reviewed", "Running");
    assert.deepEqual(
      run.status?.approval?.decisions?.map((d) => [d.approver, d.decision]),
      [
        [oidcUsername("carol"), "Approve"],
        [oidcUsername("bob"), "Approve"],
      ],
    );
  });

  it("decides by IdP group: mallory and the certificate alice get nothing, bob can deny", async () => {
    const ns = suite.ns.name;
    await createRun("oidc/mallory", ns, runManifest("mallory-oidc"));
    await createRun("alice", ns, runManifest("alice-certificate"));
    for (const [name, who] of [
      ["mallory-oidc", oidcUsername("mallory")],
      ["alice-certificate", "alice@example.com"],
    ] as const) {
      const denied = await waitForPhase(ns, name, "Denied");
      const authorized = denied.status?.conditions?.find((c) => c.type === "Authorized");
      assert.equal(authorized?.reason, "NotGranted", name);
      assert.ok(authorized?.message?.includes(`to ${who}`), authorized?.message);
    }

    // Nor the reverse: a policy naming the certificate group and user grants the IdP's alice nothing.
    await createObject<AccessPolicy>("admin", ns, "accesspolicies", {
      apiVersion: "langgraph-jit.dev/v1alpha1",
      kind: "AccessPolicy",
      metadata: { name: "certificate-users" },
      spec: {
        subjects: [
          { kind: "Group", name: "ml-platform" },
          { kind: "User", name: "alice@example.com" },
        ],
        maxDuration: "1h",
        grants: [{ connection: "kb-postgres", actions: ["ddl"] }],
      },
    });
    const ddl = { access: [{ connection: "kb-postgres", actions: ["ddl" as const] }] };
    await createRun("oidc/alice", ns, runManifest("ddl-oidc", ddl));
    await createRun("alice", ns, runManifest("ddl-certificate", ddl));
    const oidcDdl = await waitForPhase(ns, "ddl-oidc", "Denied");
    assert.match(
      oidcDdl.status?.conditions?.find((c) => c.type === "Authorized")?.message ?? "",
      /to oidc:alice@example\.com/,
    );
    await waitForPhase(ns, "ddl-certificate", "Running");

    await createRun("oidc/carol", ns, runManifest("carol-oidc"));
    await waitForPhase(ns, "carol-oidc", "AwaitingApproval");
    const denied = kubectlJit("oidc/bob", "deny", "carol-oidc", "-n", ns, "--reason", "not now");
    assert.equal(denied.status, 0, denied.stderr);
    const run = await waitForPhase(ns, "carol-oidc", "Denied");
    assert.equal(run.status?.approval?.decisions?.[0]?.approver, oidcUsername("bob"));
  });

  describe("tokens the API server must not trust: its own 401, and nothing created", () => {
    let elsewhere: DexProcess;
    let impostor: DexProcess;
    before(async () => {
      const { passwords } = provider;
      elsewhere = await startDex({ passwords });
      // Claims to be the cluster's provider, but signs with keys of its own.
      impostor = await startDex({ passwords, issuer: provider.issuer });
    });
    after(async () => {
      await elsewhere?.stop();
      await impostor?.stop();
    });

    it("accepts a fresh token of alice's for the kubernetes client (the requests below are sound)", async () => {
      const { status, body } = await createWithToken(await tokenFor("alice"), "by-bearer");
      assert.equal(status, 201, JSON.stringify(body));
    });

    it("refuses a token from another issuer, and one that claims the cluster's issuer", async () => {
      await assertRefused(await tokenFor("alice", kubernetesClientId, elsewhere), "other-issuer");
      await assertRefused(await tokenFor("alice", kubernetesClientId, impostor), "impostor");
    });

    it("refuses a token issued to another application", async () => {
      await assertRefused(await tokenFor("alice", otherClientId), "other-audience");
    });

    it("refuses eve, whose e-mail the provider has not verified, though she is in ml-platform", async () => {
      await assertRefused(await tokenFor("eve"), "unverified");
      const viaKubectl = kubectlJit("oidc/eve", "approvals", "-n", suite.ns.name);
      assert.equal(viaKubectl.status, 1);
      assert.match(viaKubectl.stderr, /^Error from server \(Unauthorized\)/);
    });

    it("refuses an expired token", async () => {
      const { exp } = JSON.parse(
        Buffer.from(earlyToken.split(".")[1] ?? "", "base64url").toString(),
      );
      const wait = exp * 1000 + 1_000 - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      await assertRefused(earlyToken, "expired");
    });
  });
});
