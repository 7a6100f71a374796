// A run's pod never holds more than its requester could read (invariant 8): every Secret,
// ConfigMap and claim is checked as the requester, a Connection's Secret is refused whoever
// asks, and the pod runs only as a ServiceAccount its AccessPolicy names.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1PodSpec } from "@kubernetes/client-node";
import type { Requester } from "../../../api/v1alpha1.ts";
import { httpConnection, postgresConnection } from "../testing/connections.ts";
import { type ObjectReference, referencedObjects } from "./pod-references.ts";
import { TemplateRefused } from "./pod-rules.ts";
import { reviewTemplate } from "./template-review.ts";

const alice: Requester = {
  username: "alice@example.com",
  uid: "a-1",
  groups: ["ml-platform"],
  extra: { "authentication.kubernetes.io/credential-id": ["X509SHA256=ab"] },
};

const kbApi = httpConnection();
if (kbApi.spec.http)
  kbApi.spec.http.auth = { bearer: { secretRef: { name: "kb-api-token", key: "token" } } };

function podSpec(spec: Partial<V1PodSpec> = {}): { spec: V1PodSpec } {
  return { spec: { containers: [{ name: "graph", image: "g" }], ...spec } };
}

/** Reviews as alice, who may read exactly the objects named in `readable`. */
async function review(
  spec: Partial<V1PodSpec>,
  readable: string[] = [],
  serviceAccounts = ["langgraph-jit-run"],
) {
  const asked: { requester: Requester; namespace: string; ref: ObjectReference }[] = [];
  await reviewTemplate(
    {
      template: podSpec(spec),
      namespace: "agents",
      requester: alice,
      serviceAccounts: new Set(serviceAccounts),
      connections: [postgresConnection(), kbApi],
    },
    {
      rules: { sidecarUid: 17337, capture: false },
      requesterMay: async (requester, namespace, ref) => {
        asked.push({ requester, namespace, ref });
        return readable.includes(`${ref.verb} ${ref.resource}/${ref.name ?? ""}`);
      },
    },
  );
  return asked;
}

async function refusal(spec: Partial<V1PodSpec>, readable: string[] = []): Promise<string> {
  const error = await review(spec, readable).then(
    () => assert.fail("the template was accepted"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof TemplateRefused, String(error));
  return error.message;
}

describe("reviewTemplate", () => {
  it("asks as the requester, extra included, whether they may read each object", async () => {
    const asked = await review(
      {
        volumes: [{ name: "settings", configMap: { name: "graph-settings" } }],
        containers: [
          {
            name: "graph",
            image: "g",
            env: [{ name: "T", valueFrom: { secretKeyRef: { name: "graph-token", key: "t" } } }],
          },
        ],
      },
      ["get secrets/graph-token", "get configmaps/graph-settings"],
    );
    assert.deepEqual(
      asked.map(({ ref }) => `${ref.verb} ${ref.resource}/${ref.name}`),
      ["get secrets/graph-token", "get configmaps/graph-settings"],
    );
    assert.deepEqual(asked[0]?.requester, alice);
    assert.equal(asked[0]?.namespace, "agents");
  });

  it("refuses a Secret the requester may not read, through env", async () => {
    const message = await refusal({
      containers: [
        {
          name: "graph",
          image: "g",
          env: [{ name: "PW", valueFrom: { secretKeyRef: { name: "payroll", key: "pw" } } }],
        },
      ],
    });
    assert.equal(
      message,
      'spec.containers[0].env[0].valueFrom.secretKeyRef: alice@example.com may not get secrets "payroll" in namespace "agents", so the run\'s pod may not either',
    );
  });

  it("refuses a Secret mounted as a volume, through envFrom, or as an image pull secret", async () => {
    assert.match(
      await refusal({ volumes: [{ name: "s", secret: { secretName: "payroll" } }] }),
      /^spec\.volumes\[0\]\.secret: alice@example\.com may not get secrets "payroll"/,
    );
    assert.match(
      await refusal({ containers: [{ name: "g", envFrom: [{ secretRef: { name: "payroll" } }] }] }),
      /^spec\.containers\[0\]\.envFrom\[0\]\.secretRef: /,
    );
    assert.match(
      await refusal({ imagePullSecrets: [{ name: "registry" }] }),
      /^spec\.imagePullSecrets\[0\]: alice@example\.com may not get secrets "registry"/,
    );
  });

  it("refuses a ConfigMap or a claim the requester may not read", async () => {
    assert.match(
      await refusal({
        volumes: [{ name: "p", projected: { sources: [{ configMap: { name: "internal" } }] } }],
      }),
      /^spec\.volumes\[0\]\.projected\.sources\[0\]\.configMap: .* may not get configmaps "internal"/,
    );
    assert.match(
      await refusal({
        volumes: [{ name: "d", persistentVolumeClaim: { claimName: "finance-data" } }],
      }),
      /may not get persistentvolumeclaims "finance-data"/,
    );
  });

  it("refuses a Connection's Secret even to a requester who may read it", async () => {
    const readable = ["get secrets/kb-admin", "get secrets/kb-api-token"];
    const message = await refusal(
      {
        containers: [
          {
            name: "graph",
            image: "g",
            env: [
              { name: "PW", valueFrom: { secretKeyRef: { name: "kb-admin", key: "password" } } },
            ],
          },
        ],
      },
      readable,
    );
    assert.equal(
      message,
      'spec.containers[0].env[0].valueFrom.secretKeyRef: Secret "kb-admin" holds the credentials of Connection "kb-postgres", which only langgraph-jit may read',
    );
    assert.match(
      await refusal({ volumes: [{ name: "t", secret: { secretName: "kb-api-token" } }] }, readable),
      /Secret "kb-api-token" holds the credentials of Connection "kb-api"/,
    );
  });

  it("runs the pod only as a ServiceAccount its AccessPolicy names", async () => {
    await review({ serviceAccountName: "langgraph-jit-run" });
    await review({ serviceAccountName: "kb-graphs" }, [], ["kb-graphs"]);
    assert.equal(
      await refusal({ serviceAccountName: "editor" }),
      'spec.serviceAccountName: a run\'s pod runs as the ServiceAccount its AccessPolicy names (default langgraph-jit-run), not "editor"',
    );
    assert.match(await refusal({ serviceAccount: "editor" }), /not "editor"/);
    assert.match(
      await refusal({ serviceAccountName: "langgraph-jit-run", serviceAccount: "editor" }),
      /^spec\.serviceAccount: differs from spec\.serviceAccountName/,
    );
  });

  it("checks the pod rules before asking the API server anything", async () => {
    const error = await review({ hostNetwork: true, imagePullSecrets: [{ name: "x" }] }).catch(
      (e: unknown) => e,
    );
    assert.ok(error instanceof TemplateRefused);
    assert.match(error.message, /^spec\.hostNetwork/);
  });

  it("lets an authorizer that cannot answer fail the review, never pass it", async () => {
    const error = await reviewTemplate(
      {
        template: podSpec({ volumes: [{ name: "s", secret: { secretName: "x" } }] }),
        namespace: "agents",
        requester: alice,
        serviceAccounts: new Set(["langgraph-jit-run"]),
        connections: [],
      },
      {
        rules: { sidecarUid: 17337, capture: false },
        requesterMay: () => Promise.reject(new Error("connect ECONNREFUSED")),
      },
    ).catch((e: unknown) => e);
    assert.ok(error instanceof Error && !(error instanceof TemplateRefused));
  });
});

describe("referencedObjects", () => {
  it("names each object with its field and the verb the requester needs", () => {
    const refs = referencedObjects(
      podSpec({
        initContainers: [{ name: "init", envFrom: [{ configMapRef: { name: "init-settings" } }] }],
        volumes: [
          {
            name: "scratch",
            ephemeral: {
              volumeClaimTemplate: {
                spec: {
                  accessModes: ["ReadWriteOnce"],
                  dataSource: { kind: "PersistentVolumeClaim", name: "golden" },
                  dataSourceRef: {
                    apiGroup: "snapshot.storage.k8s.io",
                    kind: "VolumeSnapshot",
                    name: "nightly",
                  },
                },
              },
            },
          },
        ],
      }),
    );
    assert.deepEqual(
      refs.map((r) => [r.field, r.verb, r.group, r.resource, r.name]),
      [
        [
          "spec.initContainers[0].envFrom[0].configMapRef",
          "get",
          "",
          "configmaps",
          "init-settings",
        ],
        ["spec.volumes[0].ephemeral", "create", "", "persistentvolumeclaims", undefined],
        [
          "spec.volumes[0].ephemeral.volumeClaimTemplate.spec.dataSource",
          "get",
          "",
          "persistentvolumeclaims",
          "golden",
        ],
        [
          "spec.volumes[0].ephemeral.volumeClaimTemplate.spec.dataSourceRef",
          "get",
          "snapshot.storage.k8s.io",
          "volumesnapshots",
          "nightly",
        ],
      ],
    );
  });

  it("refuses a claim filled from another namespace or from an unknown kind", () => {
    const claim = (dataSourceRef: object) =>
      podSpec({
        volumes: [
          {
            name: "x",
            ephemeral: { volumeClaimTemplate: { spec: { dataSourceRef } as never } },
          },
        ],
      });
    assert.throws(
      () => referencedObjects(claim({ kind: "PersistentVolumeClaim", name: "a", namespace: "hr" })),
      /dataSourceRef\.namespace: a run's claims are filled from its own namespace only/,
    );
    assert.throws(
      () => referencedObjects(claim({ apiGroup: "example.com", kind: "Backup", name: "b" })),
      /filled only from a PersistentVolumeClaim or a VolumeSnapshot, not Backup/,
    );
  });
});
