// Each rule a run's pod template is held to, with the message it gives (invariant 8).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Container, V1PodSpec, V1PodTemplateSpec } from "@kubernetes/client-node";
import { checkPodTemplate, TemplateRefused } from "./pod-rules.ts";

const rules = { sidecarUid: 17337, capture: false };

function template(
  spec: Partial<V1PodSpec> = {},
  graph: Partial<V1Container> = {},
  metadata: V1PodTemplateSpec["metadata"] = {},
): V1PodTemplateSpec {
  return {
    metadata,
    spec: { containers: [{ name: "graph", image: "g", ...graph }], ...spec },
  };
}

function refusal(t: V1PodTemplateSpec, options = rules): string {
  try {
    checkPodTemplate(t, options);
  } catch (error) {
    assert.ok(error instanceof TemplateRefused, String(error));
    return error.message;
  }
  assert.fail("the template was accepted");
}

const cases: [string, V1PodTemplateSpec, RegExp][] = [
  [
    "hostNetwork",
    template({ hostNetwork: true }),
    /^spec\.hostNetwork: would let the graph reach around its sidecar$/,
  ],
  ["hostPID", template({ hostPID: true }), /^spec\.hostPID: /],
  ["hostIPC", template({ hostIPC: true }), /^spec\.hostIPC: /],
  [
    "a shared process namespace",
    template({ shareProcessNamespace: true }),
    /^spec\.shareProcessNamespace: /,
  ],
  [
    "ephemeral containers",
    template({ ephemeralContainers: [{ name: "debug", image: "busybox" }] }),
    /^spec\.ephemeralContainers: a run's pod has no ephemeral containers$/,
  ],
  [
    "hostAliases (an http Connection's host mapped to 127.0.0.1)",
    template({ hostAliases: [{ ip: "127.0.0.1", hostnames: ["kb-api.agents.svc"] }] }),
    /^spec\.hostAliases: would change where the sidecar's connections go$/,
  ],
  [
    "dnsPolicy None",
    template({ dnsPolicy: "None" }),
    /^spec\.dnsPolicy: "None" would change where the sidecar's connections go/,
  ],
  ["dnsPolicy Default", template({ dnsPolicy: "Default" }), /^spec\.dnsPolicy: "Default"/],
  ["dnsConfig", template({ dnsConfig: { nameservers: ["10.0.0.9"] } }), /^spec\.dnsConfig: /],
  [
    "hostname",
    template({ hostname: "kb-api" }),
    /^spec\.hostname: would add names for the pod's own address/,
  ],
  ["subdomain", template({ subdomain: "kb" }), /^spec\.subdomain: /],
  [
    "a mounted service-account token",
    template({ automountServiceAccountToken: true }),
    /^spec\.automountServiceAccountToken: a run's pod holds no Kubernetes API credential/,
  ],
  ["device claims", template({ resourceClaims: [{ name: "gpu" }] }), /^spec\.resourceClaims: /],
  [
    "the sidecar's UID for the pod",
    template({ securityContext: { runAsUser: 17337 } }),
    /^spec\.securityContext\.runAsUser: UID 17337 is reserved for the langgraph-jit sidecar$/,
  ],
  [
    "the sidecar's UID for a container",
    template({}, { securityContext: { runAsUser: 17337 } }),
    /^spec\.containers\[0\]\.securityContext\.runAsUser: UID 17337 is reserved/,
  ],
  [
    "an unsafe sysctl",
    template({ securityContext: { sysctls: [{ name: "net.ipv4.ip_forward", value: "1" }] } }),
    /^spec\.securityContext\.sysctls\[0\]: sysctl "net\.ipv4\.ip_forward" is not one of baseline's safe sysctls$/,
  ],
  [
    "an unconfined seccomp profile",
    template({ securityContext: { seccompProfile: { type: "Unconfined" } } }),
    /^spec\.securityContext\.seccompProfile\.type: Unconfined is not allowed \(baseline\)$/,
  ],
  [
    "an unconfined AppArmor profile",
    template({}, { securityContext: { appArmorProfile: { type: "Unconfined" } } }),
    /^spec\.containers\[0\]\.securityContext\.appArmorProfile\.type: Unconfined/,
  ],
  [
    "an unconfined AppArmor annotation",
    template(
      {},
      {},
      { annotations: { "container.apparmor.security.beta.kubernetes.io/graph": "unconfined" } },
    ),
    /^metadata\.annotations\[container\.apparmor\.security\.beta\.kubernetes\.io\/graph\]: AppArmor profile "unconfined" is not allowed/,
  ],
  [
    "an SELinux user",
    template({}, { securityContext: { seLinuxOptions: { user: "system_u" } } }),
    /^spec\.containers\[0\]\.securityContext\.seLinuxOptions: setting the SELinux user or role/,
  ],
  [
    "an SELinux type beyond baseline",
    template({ securityContext: { seLinuxOptions: { type: "spc_t" } } }),
    /^spec\.securityContext\.seLinuxOptions\.type: "spc_t" is not allowed/,
  ],
  [
    "a Windows host process",
    template({}, { securityContext: { windowsOptions: { hostProcess: true } } }),
    /windowsOptions\.hostProcess: host processes are not allowed$/,
  ],
  [
    "a privileged container",
    template({
      initContainers: [{ name: "setup", image: "g", securityContext: { privileged: true } }],
    }),
    /^spec\.initContainers\[0\]\.securityContext\.privileged: would let the graph reach around its sidecar$/,
  ],
  [
    "an unmasked /proc",
    template({}, { securityContext: { procMount: "Unmasked" } }),
    /procMount: "Unmasked" is not allowed \(baseline: Default\)$/,
  ],
  [
    "NET_ADMIN",
    template({}, { securityContext: { capabilities: { add: ["NET_ADMIN"] } } }),
    /^spec\.containers\[0\]\.securityContext\.capabilities\.add\[0\]: NET_ADMIN is beyond baseline's capabilities/,
  ],
  [
    "CAP_SYS_PTRACE spelled with its prefix",
    template({}, { securityContext: { capabilities: { add: ["CHOWN", "cap_sys_ptrace"] } } }),
    /capabilities\.add\[1\]: SYS_PTRACE is beyond baseline's capabilities/,
  ],
  [
    "NET_RAW",
    template({}, { securityContext: { capabilities: { add: ["NET_RAW"] } } }),
    /NET_RAW is beyond baseline's/,
  ],
  [
    "a host port",
    template({}, { ports: [{ containerPort: 80, hostPort: 80 }] }),
    /^spec\.containers\[0\]\.ports\[0\]\.hostPort: host ports are not allowed$/,
  ],
  [
    "a probe the kubelet sends to another host",
    template({}, { livenessProbe: { httpGet: { host: "169.254.169.254", port: 80, path: "/" } } }),
    /^spec\.containers\[0\]\.livenessProbe\.httpGet\.host: the kubelet would connect from the node/,
  ],
  [
    "a lifecycle hook to another host",
    template({}, { lifecycle: { preStop: { tcpSocket: { host: "10.96.0.1", port: 443 } } } }),
    /^spec\.containers\[0\]\.lifecycle\.preStop\.tcpSocket\.host: /,
  ],
  [
    "the sidecar's container name",
    template({}, { name: "langgraph-jit-sidecar" }),
    /^spec\.containers\[0\]\.name: "langgraph-jit-sidecar" is reserved for langgraph-jit$/,
  ],
  [
    "the capture container's name",
    template({ initContainers: [{ name: "langgraph-jit-capture", image: "g" }] }),
    /^spec\.initContainers\[0\]\.name: "langgraph-jit-capture" is reserved/,
  ],
  [
    "mounting the sidecar's token volume",
    template({}, { volumeMounts: [{ name: "langgraph-jit-token", mountPath: "/t" }] }),
    /^spec\.containers\[0\]\.volumeMounts\[0\]: volume "langgraph-jit-token" is the sidecar's$/,
  ],
  [
    "a volume under the sidecar's state volume's name",
    template({ volumes: [{ name: "langgraph-jit-state", emptyDir: {} }] }),
    /^spec\.volumes\[0\]\.name: "langgraph-jit-state" is reserved/,
  ],
  [
    "a hostPath volume",
    template({ volumes: [{ name: "root", hostPath: { path: "/" } }] }),
    /^spec\.volumes\[0\]\.hostPath: hostPath volumes are not allowed in a run's pod: the node mounts them from outside it/,
  ],
  [
    "an inline CSI volume",
    template({ volumes: [{ name: "vault", csi: { driver: "secrets-store.csi.k8s.io" } }] }),
    /^spec\.volumes\[0\]\.csi: inline CSI volumes are not allowed/,
  ],
  [
    "an NFS volume, mounted by the node past the sidecar",
    template({ volumes: [{ name: "share", nfs: { server: "10.0.0.5", path: "/" } }] }),
    /^spec\.volumes\[0\]\.nfs: nfs volumes are not allowed/,
  ],
  [
    "a gitRepo volume",
    template({ volumes: [{ name: "src", gitRepo: { repository: "https://example.com/x" } }] }),
    /^spec\.volumes\[0\]\.gitRepo: gitRepo volumes are not allowed/,
  ],
  [
    "a volume with two sources",
    template({ volumes: [{ name: "x", emptyDir: {}, secret: { secretName: "s" } }] }),
    /^spec\.volumes\[0\]: a volume has exactly one source, not 2$/,
  ],
  [
    "a projected token for the default audience",
    template({
      volumes: [{ name: "t", projected: { sources: [{ serviceAccountToken: { path: "t" } }] } }],
    }),
    /^spec\.volumes\[0\]\.projected\.sources\[0\]\.serviceAccountToken: a run's pod holds no Kubernetes API credential/,
  ],
  [
    "a projected token for the sidecar's audience",
    template({
      volumes: [
        {
          name: "t",
          projected: {
            sources: [{ serviceAccountToken: { audience: "langgraph-jit", path: "t" } }],
          },
        },
      ],
    }),
    /serviceAccountToken: a token for audience "langgraph-jit" is the sidecar's alone$/,
  ],
  [
    "a projected pod certificate",
    template({
      volumes: [
        {
          name: "c",
          projected: {
            sources: [{ podCertificate: { signerName: "x/y", keyType: "ED25519" } } as never],
          },
        },
      ],
    }),
    /^spec\.volumes\[0\]\.projected\.sources\[0\]\.podCertificate: projecting podCertificate is not allowed/,
  ],
  [
    "the run label",
    template({}, {}, { labels: { "langgraph-jit.dev/run": "someone-elses-run" } }),
    /^metadata\.labels\[langgraph-jit\.dev\/run\]: is reserved for langgraph-jit and the Job controller/,
  ],
  [
    "the Job controller's label",
    template({}, {}, { labels: { "batch.kubernetes.io/controller-uid": "x" } }),
    /^metadata\.labels\[batch\.kubernetes\.io\/controller-uid\]: is reserved/,
  ],
];

describe("checkPodTemplate", () => {
  for (const [what, refused, message] of cases) {
    it(`refuses ${what}`, () => {
      assert.match(refusal(refused), message);
    });
  }

  it("accepts what a graph normally needs", () => {
    assert.doesNotThrow(() =>
      checkPodTemplate(
        template(
          {
            dnsPolicy: "ClusterFirst",
            automountServiceAccountToken: false,
            securityContext: {
              runAsUser: 1000,
              runAsNonRoot: true,
              seccompProfile: { type: "RuntimeDefault" },
              sysctls: [{ name: "net.ipv4.tcp_keepalive_time", value: "60" }],
            },
            volumes: [
              { name: "scratch", emptyDir: {} },
              { name: "settings", configMap: { name: "graph-settings" } },
              { name: "info", downwardAPI: { items: [] } },
              {
                name: "mixed",
                projected: { sources: [{ configMap: { name: "c" } }, { secret: { name: "s" } }] },
              },
              { name: "data", persistentVolumeClaim: { claimName: "kb-cache" } },
            ],
          },
          {
            securityContext: {
              allowPrivilegeEscalation: false,
              capabilities: { drop: ["ALL"], add: ["NET_BIND_SERVICE"] },
            },
            livenessProbe: { httpGet: { path: "/healthz", port: 8080 } },
          },
          { labels: { app: "kb-graph" } },
        ),
        rules,
      ),
    );
  });

  it("ignores fields the API server would drop as null", () => {
    const volume = { name: "x", emptyDir: {}, hostPath: null } as never;
    assert.doesNotThrow(() => checkPodTemplate(template({ volumes: [volume] }), rules));
  });

  describe("with in-pod capture, which exempts the sidecar's UID", () => {
    const capture = { ...rules, capture: true };

    it("refuses SETUID and SETGID, with which a graph could take that UID", () => {
      for (const cap of ["SETUID", "SETGID"]) {
        const added = template({}, { securityContext: { capabilities: { add: ["CHOWN", cap] } } });
        assert.doesNotThrow(() => checkPodTemplate(added, rules));
        assert.match(
          refusal(added, capture),
          new RegExp(
            `capabilities\\.add\\[1\\]: ${cap} would let the graph take the sidecar's UID`,
          ),
        );
      }
    });

    it("refuses privilege escalation", () => {
      const escalating = template({}, { securityContext: { allowPrivilegeEscalation: true } });
      assert.match(
        refusal(escalating, capture),
        /allowPrivilegeEscalation: would let the graph take/,
      );
    });
  });
});
