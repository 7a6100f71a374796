import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Pod, V1PodSpec } from "@kubernetes/client-node";
import { sidecarEnv } from "../../../api/sidecar-contract.ts";
import type { AccessPolicy, Requester } from "../../../api/v1alpha1.ts";
import { runIdentityEnv, type SidecarSettings, withSidecar } from "../runs/job-builder.ts";
import {
  clusterConnection,
  httpConnection,
  offered,
  postgresConnection,
} from "../testing/connections.ts";
import type { AdmissionRequest, AdmissionResponse } from "./admission-review.ts";
import { admitTaggedPod, type PodAdmissionDeps } from "./pod-admission.ts";

const namespace = "agents";
const sidecar: SidecarSettings = {
  image: "localhost/lgjit/sidecar:test",
  imagePullPolicy: "Never",
  uid: 65532,
  operatorUrl: "https://langgraph-jit.langgraph-jit.svc:8443",
  operatorCaPem: "-----BEGIN CERTIFICATE-----\n...",
  capture: false,
};
const connections = [postgresConnection(), httpConnection()];
const nightly: AccessPolicy = {
  metadata: { name: "nightly", namespace },
  spec: {
    subjects: [{ kind: "ServiceAccount", name: "nightly" }],
    maxDuration: "1h",
    grants: [
      { connection: "kb-postgres", actions: ["read", "write"] },
      { connection: "kb-api", actions: ["read"] },
    ],
  },
};

function taggedPod(
  annotations: Record<string, string> = { "langgraph-jit.dev/access": "kb-postgres=read" },
  spec: Partial<V1PodSpec> = {},
  labels: Record<string, string> = { "langgraph-jit.dev/inject": "true", app: "kb-server" },
): V1Pod {
  return {
    metadata: { generateName: "kb-server-7d9f8-", namespace, labels, annotations },
    spec: {
      serviceAccountName: "nightly",
      dnsPolicy: "ClusterFirst",
      restartPolicy: "Always",
      containers: [{ name: "graph", image: "localhost/lgjit/graph:test" }],
      ...spec,
    },
  };
}

/** The account's answers, by "verb" or "verb name"; everything else is refused. */
function deps(
  allowed: string[] = [],
  failing = false,
  named = offered(...connections),
): PodAdmissionDeps & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    policies: () => [nightly],
    connections: () => named,
    rules: { sidecarUid: sidecar.uid, capture: false },
    sidecar: () => sidecar,
    accountMay: async (account: Requester, _ns, { verb, resource, subresource, name }) => {
      const what = [verb, subresource ? `${resource}/${subresource}` : resource, name]
        .filter(Boolean)
        .join(" ");
      asked.push(`${account.username} ${what}`);
      if (failing) throw new Error("the authorizer did not answer");
      return allowed.includes(what);
    },
  };
}

function review(pod: V1Pod, operation: "CREATE" | "UPDATE" = "CREATE"): AdmissionRequest<V1Pod> {
  return {
    uid: "req-1",
    kind: { group: "", version: "v1", kind: "Pod" },
    resource: { group: "", version: "v1", resource: "pods" },
    namespace,
    operation,
    // The ReplicaSet controller creates the pod: its identity is not the pod's requester.
    userInfo: { username: "system:serviceaccount:kube-system:replicaset-controller" },
    object: pod,
  };
}

function patchOf(response: AdmissionResponse): { op: string; path: string; value: unknown }[] {
  return JSON.parse(Buffer.from(response.patch ?? "", "base64").toString("utf8"));
}

function refusal(response: AdmissionResponse): string {
  assert.equal(response.allowed, false, "admitted");
  return `${response.status?.code} ${response.status?.message}`;
}

describe("a tagged pod's admission", () => {
  it("injects exactly the sidecar a run's Job gets, for the connections it names", async () => {
    const pod = taggedPod({ "langgraph-jit.dev/access": "kb-api=read; kb-postgres=read,write" });
    const answer = await admitTaggedPod(review(pod), deps());
    assert.equal(answer.allowed, true, answer.status?.message);
    const [spec, container] = patchOf(answer);
    assert.deepEqual(spec, {
      op: "replace",
      path: "/spec",
      value: JSON.parse(
        JSON.stringify(
          withSidecar(
            pod.spec as V1PodSpec,
            runIdentityEnv(undefined),
            [...connections].reverse(),
            sidecar,
          ),
        ),
      ),
    });
    const injected = spec?.value as V1PodSpec;
    const proxy = injected.initContainers?.[0];
    assert.equal(proxy?.name, "langgraph-jit-sidecar");
    assert.equal(proxy?.restartPolicy, "Always", "a native sidecar");
    assert.deepEqual(
      proxy?.env?.find((e) => e.name === sidecarEnv.run),
      { name: sidecarEnv.run, valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      "its run is named after the pod",
    );
    assert.equal(
      proxy?.env?.find((e) => e.name === sidecarEnv.runUid),
      undefined,
    );
    const graphEnv = injected.containers[0]?.env?.map((e) => e.name);
    assert.ok(graphEnv?.includes("LGJIT_KB_API_URL") && graphEnv.includes("DATABASE_URL"));
    assert.ok(
      !injected.containers[0]?.volumeMounts?.some((m) => m.name === "langgraph-jit-token"),
      "the graph never mounts the sidecar's token",
    );
    assert.deepEqual(container, {
      op: "add",
      path: "/metadata/annotations/kubectl.kubernetes.io~1default-container",
      value: "graph",
    });
  });

  it("keeps a Job's pod labels and the pod's own API token, whose reach it checks", async () => {
    const pod = taggedPod(
      undefined,
      { automountServiceAccountToken: true },
      {
        "langgraph-jit.dev/inject": "true",
        "batch.kubernetes.io/job-name": "nightly-29123",
        "job-name": "nightly-29123",
      },
    );
    const d = deps();
    assert.equal((await admitTaggedPod(review(pod), d)).allowed, true);
    assert.deepEqual(d.asked, [
      "system:serviceaccount:agents:nightly list secrets",
      "system:serviceaccount:agents:nightly watch secrets",
      "system:serviceaccount:agents:nightly create pods",
      "system:serviceaccount:agents:nightly create serviceaccounts/token nightly",
      "system:serviceaccount:agents:nightly get secrets kb-admin",
    ]);
  });

  it("with a ClusterConnection, checks only that the account cannot mint its tokens: its Secret is elsewhere", async () => {
    const platform = offered(clusterConnection(postgresConnection(), {}), httpConnection());
    // A Secret of the namespace that happens to share the ClusterConnection's Secret's name.
    const mountsNamesake = taggedPod(undefined, {
      volumes: [{ name: "x", secret: { secretName: "kb-admin" } }],
    });
    const d = deps(["get secrets kb-admin", "list secrets"], false, platform);
    assert.equal((await admitTaggedPod(review(mountsNamesake), d)).allowed, true);
    assert.deepEqual(d.asked, [
      "system:serviceaccount:agents:nightly create serviceaccounts/token nightly",
    ]);
    const minting = deps(["create serviceaccounts/token nightly"], false, platform);
    assert.match(
      refusal(await admitTaggedPod(review(taggedPod()), minting)),
      /^403 spec.serviceAccountName: ServiceAccount "nightly" may mint its own tokens/,
    );
  });

  it("keeps the pod's own API token volume, but refuses one for the sidecar's audience", async () => {
    const token = (audience?: string) => ({
      name: "kube-api-access-x2x9q",
      projected: {
        sources: [
          {
            serviceAccountToken: {
              expirationSeconds: 3607,
              path: "token",
              ...(audience ? { audience } : {}),
            },
          },
          { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
        ],
      },
    });
    const own = taggedPod(undefined, { volumes: [token()] });
    assert.equal((await admitTaggedPod(review(own), deps())).allowed, true);
    const forged = taggedPod(undefined, { volumes: [token("langgraph-jit")] });
    assert.match(
      refusal(await admitTaggedPod(review(forged), deps())),
      /^422 spec\.volumes\[0\]\.projected\.sources\[0\]\.serviceAccountToken: a token for audience "langgraph-jit" is the sidecar's alone/,
    );
  });

  it("leaves alone a pod that is not tagged, and any update", async () => {
    const untagged = taggedPod(undefined, {}, { app: "kb-server" });
    assert.deepEqual(await admitTaggedPod(review(untagged), deps()), {
      uid: "req-1",
      allowed: true,
    });
    assert.deepEqual(await admitTaggedPod(review(taggedPod(), "UPDATE"), deps()), {
      uid: "req-1",
      allowed: true,
    });
  });

  it("refuses an access annotation that is missing or malformed, naming it", async () => {
    assert.match(
      refusal(await admitTaggedPod(review(taggedPod({})), deps())),
      /^422 metadata\.annotations\[langgraph-jit\.dev\/access\]: it is missing or empty; write it as/,
    );
    assert.match(
      refusal(
        await admitTaggedPod(
          review(taggedPod({ "langgraph-jit.dev/access": "kb-postgres:read" })),
          deps(),
        ),
      ),
      /^422 metadata\.annotations\[langgraph-jit\.dev\/access\]: entry 1 \("kb-postgres:read"\) is not CONNECTION=ACTIONS/,
    );
    const tooLong = taggedPod({
      "langgraph-jit.dev/access": "kb-postgres=read",
      "langgraph-jit.dev/max-duration": "200h",
    });
    assert.match(
      refusal(await admitTaggedPod(review(tooLong), deps())),
      /^422 metadata\.annotations\[langgraph-jit\.dev\/max-duration\]: "200h" must be a duration from 1m to 168h/,
    );
  });

  it("refuses what no policy grants the pod's ServiceAccount, an unknown Connection, and a longer credential", async () => {
    const other = taggedPod(undefined, { serviceAccountName: "default" });
    assert.match(
      refusal(await admitTaggedPod(review(other), deps())),
      /^403 metadata\.annotations\[langgraph-jit\.dev\/access\]: NotGranted: .*system:serviceaccount:agents:default/,
    );
    const unnamed = taggedPod(undefined, { serviceAccountName: undefined });
    assert.match(
      refusal(await admitTaggedPod(review(unnamed), deps())),
      /system:serviceaccount:agents:default/,
    );
    const write = taggedPod({ "langgraph-jit.dev/access": "kb-api=write" });
    assert.match(
      refusal(await admitTaggedPod(review(write), deps())),
      /^403 .*NotGranted: .*"write"/,
    );
    const unknown = taggedPod({ "langgraph-jit.dev/access": "kb-mongo=read" });
    assert.match(
      refusal(await admitTaggedPod(review(unknown), deps())),
      /^403 .*ConnectionNotFound/,
    );
    const longer = taggedPod({
      "langgraph-jit.dev/access": "kb-postgres=read",
      "langgraph-jit.dev/max-duration": "2h",
    });
    assert.match(refusal(await admitTaggedPod(review(longer), deps())), /^403 .*DurationExceeded/);
  });

  it("refuses what a run's pod may not do to its sidecar", async () => {
    const cases: [Partial<V1PodSpec>, RegExp][] = [
      [
        { containers: [{ name: "langgraph-jit-sidecar", image: "evil" }] },
        /^422 spec\.containers\[0\]/,
      ],
      [
        { containers: [{ name: "graph", image: "g", securityContext: { runAsUser: 65532 } }] },
        /^422 spec\.containers\[0\]\.securityContext\.runAsUser/,
      ],
      [
        { containers: [{ name: "graph", image: "g", securityContext: { privileged: true } }] },
        /^422 spec\.containers\[0\]\.securityContext\.privileged/,
      ],
      [
        {
          containers: [
            {
              name: "graph",
              image: "g",
              securityContext: { capabilities: { add: ["NET_ADMIN"] } },
            },
          ],
        },
        /^422 spec\.containers\[0\]\.securityContext\.capabilities\.add/,
      ],
      [{ hostAliases: [{ ip: "10.0.0.9", hostnames: ["kb.db.svc"] }] }, /^422 spec\.hostAliases/],
      [{ hostNetwork: true }, /^422 spec\.hostNetwork/],
      [{ dnsPolicy: "None" }, /^422 spec\.dnsPolicy/],
    ];
    for (const [spec, why] of cases) {
      assert.match(refusal(await admitTaggedPod(review(taggedPod(undefined, spec)), deps())), why);
    }
    const claimed = taggedPod(
      undefined,
      {},
      {
        "langgraph-jit.dev/inject": "true",
        "langgraph-jit.dev/run": "someone-elses-run",
      },
    );
    assert.match(
      refusal(await admitTaggedPod(review(claimed), deps())),
      /^422 metadata\.labels\[langgraph-jit\.dev\/run\]: is reserved/,
    );
  });

  it("refuses a pod that mounts a Connection's Secret", async () => {
    const pod = taggedPod(undefined, {
      volumes: [{ name: "creds", secret: { secretName: "kb-admin" } }],
    });
    assert.match(
      refusal(await admitTaggedPod(review(pod), deps())),
      /^422 spec\.volumes\[0\]\.secret: Secret "kb-admin" holds the credentials of Connection "kb-postgres"/,
    );
  });

  it("refuses a ServiceAccount whose own token could reach a Connection's credentials", async () => {
    for (const [allowed, reach] of [
      ["get secrets kb-admin", 'get Secret "kb-admin" of Connection "kb-postgres"'],
      ["list secrets", "list the namespace's Secrets"],
      ["watch secrets", "watch the namespace's Secrets"],
      ["create pods", "create pods, which may mount any Secret"],
      ["create serviceaccounts/token nightly", "mint its own tokens, for any audience"],
    ]) {
      assert.equal(
        refusal(await admitTaggedPod(review(taggedPod()), deps([allowed as string]))),
        `403 spec.serviceAccountName: ServiceAccount "nightly" may ${reach}, so the pod's graph could reach the credentials the sidecar holds for it; run the pod as an account that may not`,
      );
    }
  });

  it("refuses, fail closed, when the account's reach cannot be reviewed", async () => {
    assert.equal(
      refusal(await admitTaggedPod(review(taggedPod()), deps([], true))),
      '503 the access of ServiceAccount "nightly" could not be reviewed: the authorizer did not answer',
    );
  });
});
