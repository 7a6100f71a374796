// Proves the test cluster gives what the product relies on: CRDs, bound service-account
// tokens with pod extras in TokenReview, RBAC that tells identities apart, and OIDC users.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  ApiextensionsV1Api,
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1CustomResourceDefinition,
} from "@kubernetes/client-node";
import { oidcGroup, oidcUsername, oidcUsers } from "../cluster/dex-config.ts";
import {
  createTestNamespace,
  eventually,
  expectApiError,
  kubeConfigFor,
  statusOf,
} from "../lib/cluster.ts";

const admin = kubeConfigFor("admin");
const core = admin.makeApiClient(CoreV1Api);
const authn = admin.makeApiClient(AuthenticationV1Api);

describe("test cluster", () => {
  let namespace: { name: string; remove: () => Promise<void> };
  before(async () => {
    namespace = await createTestNamespace("smoke");
  });
  after(async () => {
    await namespace?.remove();
  });

  it("installs a CustomResourceDefinition and serves its resources", async () => {
    const extensions = admin.makeApiClient(ApiextensionsV1Api);
    const objects = admin.makeApiClient(CustomObjectsApi);
    const group = "smoke.langgraph-jit.dev";
    const crd: V1CustomResourceDefinition = {
      metadata: { name: `widgets.${group}` },
      spec: {
        group,
        scope: "Namespaced",
        names: { plural: "widgets", singular: "widget", kind: "Widget" },
        versions: [
          {
            name: "v1",
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: "object",
                properties: {
                  spec: { type: "object", properties: { size: { type: "integer", minimum: 1 } } },
                },
              },
            },
          },
        ],
      },
    };
    await extensions.createCustomResourceDefinition({ body: crd }).catch((error: unknown) => {
      if (statusOf(error) !== 409) throw error;
    });
    await eventually("the CRD to be established", async () => {
      const current = await extensions.readCustomResourceDefinition({ name: `widgets.${group}` });
      const established = current.status?.conditions?.find((c) => c.type === "Established");
      return established?.status === "True";
    });
    const widget = { apiVersion: `${group}/v1`, kind: "Widget", metadata: { name: "w" } };
    const created = await eventually("the CRD's resource to be served", () =>
      objects.createNamespacedCustomObject({
        group,
        version: "v1",
        namespace: namespace.name,
        plural: "widgets",
        body: { ...widget, spec: { size: 3 } },
      }),
    );
    assert.equal(created.spec.size, 3);

    // The structural schema is enforced by the real apiserver.
    const invalid = objects.createNamespacedCustomObject({
      group,
      version: "v1",
      namespace: namespace.name,
      plural: "widgets",
      body: { ...widget, metadata: { name: "bad" }, spec: { size: 0 } },
    });
    assert.equal(await expectApiError(invalid), 422);
  });

  it("binds a TokenRequest token to a pod and reviews it with the pod's name and uid", async () => {
    const ns = namespace.name;
    await core.createNamespacedServiceAccount({
      namespace: ns,
      body: { metadata: { name: "graph" } },
    });
    const pod = await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: "graph" },
        spec: {
          serviceAccountName: "graph",
          containers: [{ name: "graph", image: "registry.invalid/graph:1" }],
        },
      },
    });
    const podUid = pod.metadata?.uid;
    assert.ok(podUid, "the created pod has a uid");

    const tokenRequest = await core.createNamespacedServiceAccountToken({
      name: "graph",
      namespace: ns,
      body: {
        spec: {
          audiences: ["langgraph-jit"],
          expirationSeconds: 600,
          boundObjectRef: { apiVersion: "v1", kind: "Pod", name: "graph", uid: podUid },
        },
      },
    });
    const token = tokenRequest.status?.token;
    assert.ok(token, "the TokenRequest returned a token");

    const review = (audiences: string[]) =>
      authn.createTokenReview({ body: { spec: { token, audiences } } });

    const accepted = await review(["langgraph-jit"]);
    assert.equal(accepted.status?.authenticated, true, accepted.status?.error);
    assert.equal(accepted.status?.user?.username, `system:serviceaccount:${ns}:graph`);
    assert.deepEqual(accepted.status?.audiences, ["langgraph-jit"]);
    const extra = accepted.status?.user?.extra ?? {};
    assert.deepEqual(extra["authentication.kubernetes.io/pod-name"], ["graph"]);
    assert.deepEqual(extra["authentication.kubernetes.io/pod-uid"], [podUid]);

    const otherAudience = await review(["another-service"]);
    assert.equal(otherAudience.status?.authenticated ?? false, false);
    assert.match(otherAudience.status?.error ?? "", /audience/);

    await core.deleteNamespacedPod({ name: "graph", namespace: ns, gracePeriodSeconds: 0 });
    await eventually("the pod to be gone", async () =>
      core.readNamespacedPod({ name: "graph", namespace: ns }).then(
        () => undefined,
        (error: unknown) => statusOf(error) === 404,
      ),
    );
    // The apiserver caches successful token authentications for 10 s (tokencache), so a
    // deleted pod's token is refused once that entry lapses, not at the instant of deletion.
    const refused = await eventually("the deleted pod's token to be refused", async () => {
      const afterDelete = await review(["langgraph-jit"]);
      return afterDelete.status?.authenticated ? undefined : afterDelete.status;
    });
    assert.match(refused.error ?? "", /invalidated|not found/);
  });

  it("forbids mallory to list secrets while admin may", async () => {
    const mallory = kubeConfigFor("mallory").makeApiClient(CoreV1Api);
    const forbidden = mallory.listNamespacedSecret({ namespace: namespace.name });
    assert.equal(await expectApiError(forbidden), 403);

    const secrets = await core.listNamespacedSecret({ namespace: namespace.name });
    assert.ok(Array.isArray(secrets.items));
  });

  it("authenticates test identities with their groups from the client certificate", async () => {
    const alice = kubeConfigFor("alice").makeApiClient(AuthenticationV1Api);
    const review = await alice.createSelfSubjectReview({ body: {} });
    assert.equal(review.status?.userInfo?.username, "alice@example.com");
    assert.ok(review.status?.userInfo?.groups?.includes("ml-platform"));
  });

  it("authenticates Dex's users through their kubeconfig's exec plugin, prefixed", async () => {
    for (const user of oidcUsers.filter((u) => u.emailVerified)) {
      const api = kubeConfigFor(`oidc/${user.name}`).makeApiClient(AuthenticationV1Api);
      const review = await api.createSelfSubjectReview({ body: {} });
      assert.equal(review.status?.userInfo?.username, oidcUsername(user.name));
      assert.deepEqual(review.status?.userInfo?.groups, [
        ...user.groups.map(oidcGroup),
        "system:authenticated",
      ]);
    }
  });
});
