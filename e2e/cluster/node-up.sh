#!/usr/bin/env bash
# Starts the test node on a running control plane: containerd (private root, state and
# socket), the bridge CNI, the images (images.sh), the kubelet, kube-proxy in iptables mode
# and CoreDNS. Everything it makes lives under .cluster/node; node-down.sh removes it.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=versions.env
source "$cluster_scripts/versions.env"

kubectl=("$state/bin/kubectl" --kubeconfig "$state/admin.kubeconfig")
containerd_dir="$node_dir/containerd"
socket="$containerd_dir/containerd.sock"
mkdir -p "$containerd_dir" "$node_dir/cni/net.d" "$node_dir/kubelet" "$node_dir/kube-proxy"

cat >"$node_dir/cni/net.d/10-lgjit.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "lgjit",
  "plugins": [
    {
      "type": "bridge", "bridge": "$bridge", "isGateway": true, "hairpinMode": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "$node_ip"}]],
        "routes": [{"dst": "$service_cidr"}],
        "dataDir": "$node_dir/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
# Pods get a route to the Service range only (the bridge is on-link): no default route out.

cat >"$containerd_dir/config.toml" <<TOML
version = 2
root = "$containerd_dir/root"
state = "$containerd_dir/state"
[grpc]
  address = "$socket"
[ttrpc]
  address = "$socket.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/lgjit/pause:$K8S_VERSION"
  netns_mounts_under_state_dir = true
  # Test VM: CAP_SYS_RESOURCE is withheld, so the negative oom_score_adj kubelet asks for is refused.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$containerd_dir/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_dir/cni/net.d"
    max_conf_num = 1
TOML

log "starting containerd ($socket)"
start containerd --config "$containerd_dir/config.toml"
wait_until "containerd" 30 ctr --address "$socket" version

"$cluster_scripts/images.sh"

cat >"$node_dir/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
# cgroup v1 hierarchies without systemd managing them.
cgroupDriver: cgroupfs
# Test VM: swap may be on; nothing here measures memory pressure.
failSwapOn: false
containerRuntimeEndpoint: unix://$socket
clusterDomain: cluster.local
clusterDNS: [$dns_ip]
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# Every image is imported, never pulled: keep them all however full the shared disk gets.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
podPidsLimit: 4096
maxPods: 60
podLogsDir: $node_dir/kubelet/pod-logs
YAML

log "starting the kubelet ($node_name, $node_ip)"
start kubelet --config "$node_dir/kubelet/config.yaml" --kubeconfig "$state/kubelet.kubeconfig" \
  --root-dir "$node_dir/kubelet/root" --cert-dir "$node_dir/kubelet/pki" \
  --hostname-override "$node_name" --node-ip "$node_ip"

cat >"$node_dir/kube-proxy/config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $state/kube-proxy.kubeconfig}
hostnameOverride: $node_name
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $pod_cidr
nodePortAddresses: [$node_ip/32]
# No NodePort on loopback: that would need route_localnet, a host-wide sysctl.
iptables: {localhostNodePorts: false}
# Zeros leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
log "starting kube-proxy (iptables)"
start kube-proxy --config "$node_dir/kube-proxy/config.yaml"

wait_until "node $node_name Ready" 120 "${kubectl[@]}" wait --for=condition=Ready "node/$node_name" --timeout=2s
"${kubectl[@]}" apply -f "$cluster_scripts/kube-router-rbac.yaml" >/dev/null
start_kube_router
log "starting CoreDNS ($dns_ip)"
sed "s|@COREDNS_IMAGE@|localhost/lgjit/coredns:$COREDNS_VERSION|; s|@DNS_IP@|$dns_ip|" \
  "$cluster_scripts/coredns.yaml" | "${kubectl[@]}" apply -f - >/dev/null
wait_until "CoreDNS" 120 "${kubectl[@]}" -n kube-system rollout status deployment/coredns --timeout=2s
log "node $node_name is Ready"
