#!/usr/bin/env bash
# Starts the test cluster: etcd, kube-apiserver, kube-controller-manager and kube-scheduler
# built from upstream, with kubeconfigs for admin and the test identities (client certificates,
# and OIDC users of a Dex the API server trusts), then the node (node-up.sh; NODE=0 leaves it out
# and keeps everything on loopback).
# Idempotent: when the cluster is already up it says so and changes nothing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

components=(etcd dex kube-apiserver kube-controller-manager kube-scheduler)
((with_node)) && components+=(containerd kubelet kube-proxy)
export SERVICE_IP=10.96.0.1
# Tokens live no longer than the run they serve; this is the issuer pods' tokens carry.
sa_issuer=https://kubernetes.default.svc.cluster.local

all_running() {
  local c
  for c in "${components[@]}"; do pid_alive "$pids/$c.pid" || return 1; done
}

if all_running && "$state/bin/kubectl" --kubeconfig "$state/admin.kubeconfig" get --raw /readyz >/dev/null 2>&1; then
  log "already up: $state/admin.kubeconfig"
  exit 0
fi
if [[ -d "$state" ]]; then
  log "clearing a stale cluster state"
  "$cluster_scripts/down.sh"
fi

bin="$("$cluster_scripts/build.sh")"
mkdir -p "$state" "$pids" "$logs"
ln -sfn "$bin" "$state/bin"
bin="$state/bin"

log "generating the PKI"
"$cluster_scripts/pki.sh"

etcd_port="$(free_port)"
etcd_peer_port="$(free_port)"
api_port="$(free_port)"
kcm_port="$(free_port)"
scheduler_port="$(free_port)"
dex_port="$(free_port)"
cat >"$state/ports.env" <<PORTS
ETCD_PORT=$etcd_port
API_PORT=$api_port
KUBE_CONTROLLER_MANAGER_PORT=$kcm_port
KUBE_SCHEDULER_PORT=$scheduler_port
DEX_PORT=$dex_port
PORTS
api_address=127.0.0.1
if ((with_node)); then
  # Pods reach the apiserver through the kubernetes Service, whose endpoint is the advertised
  # address: it must be one they can route to, the bridge's, which exists before the apiserver.
  "$cluster_scripts/node-network.sh" up
  api_address="$node_ip"
fi
server="https://$api_address:$api_port"

# write_kubeconfig NAME: a kubeconfig for the client certificate pki/NAME.{crt,key}.
write_kubeconfig() {
  local name="$1"
  cat >"$state/$name.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: langgraph-jit-test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$pki/$name.crt")
    client-key-data: $(base64 -w0 "$pki/$name.key")
contexts:
- name: $name@langgraph-jit-test
  context: {cluster: langgraph-jit-test, user: $name, namespace: default}
current-context: $name@langgraph-jit-test
KUBECONFIG
  chmod 600 "$state/$name.kubeconfig"
}
for identity in admin kube-controller-manager kube-scheduler kubelet kube-proxy kube-router alice bob mallory; do
  write_kubeconfig "$identity"
done

# OIDC users: Dex's configuration, the API server's AuthenticationConfiguration, a kubeconfig each.
issuer="https://127.0.0.1:$dex_port/dex"
node="$repo_root/node_modules/.bin/node"
[[ -x "$node" ]] || die "the project's Node 24 is not installed: run npm ci first"
"$node" "$repo_root/e2e/cluster/oidc-setup.ts" --state "$state" --issuer "$issuer" --server "$server"

log "starting etcd on 127.0.0.1:$etcd_port"
# --unsafe-no-fsync: a throwaway test store on a shared VM disk; durability buys nothing here.
start etcd --name lgjit --data-dir "$state/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "lgjit=http://127.0.0.1:$etcd_peer_port" \
  --log-level warn --unsafe-no-fsync
wait_until "etcd" 60 curl -fsS "http://127.0.0.1:$etcd_port/health"

# The API server checks the issuer's discovery document on start: the provider comes first.
log "starting Dex (the OpenID provider) at $issuer"
start dex serve "$state/oidc/dex.json"
wait_until "Dex" 30 curl -fsS --cacert "$pki/oidc-ca.crt" "$issuer/.well-known/openid-configuration"

# The front-proxy (requestheader) flags let it proxy to extension API servers such as the
# operator's session API; aggregator routing dials their endpoints, not the Service IP.
log "starting kube-apiserver on $server"
start kube-apiserver \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address "$api_address" --advertise-address "$api_address" --secure-port "$api_port" \
  --cert-dir "$state/apiserver-certs" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --authentication-config "$state/authentication-config.yaml" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$pki/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
  --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User \
  --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$pki/front-proxy-client.crt" \
  --proxy-client-key-file "$pki/front-proxy-client.key" \
  --enable-aggregator-routing=true \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NamespaceLifecycle,LimitRanger,ServiceAccount,NodeRestriction,DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,ResourceQuota \
  --service-account-issuer "$sa_issuer" \
  --service-account-key-file "$pki/sa.pub" \
  --service-account-signing-key-file "$pki/sa.key" \
  --api-audiences "$sa_issuer" \
  --service-cluster-ip-range "$service_cidr" \
  --allow-privileged=true \
  --profiling=false
wait_until "kube-apiserver /readyz" 120 "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig" get --raw /readyz

log "starting kube-controller-manager and kube-scheduler"
start kube-controller-manager \
  --kubeconfig "$state/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig "$state/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig "$state/kube-controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$kcm_port" \
  --cert-dir "$state/kube-controller-manager-certs" \
  --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --service-account-private-key-file "$pki/sa.key" \
  --use-service-account-credentials=true \
  --service-cluster-ip-range "$service_cidr" \
  --leader-elect=false --profiling=false
start kube-scheduler \
  --kubeconfig "$state/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig "$state/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig "$state/kube-scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$scheduler_port" \
  --cert-dir "$state/kube-scheduler-certs" \
  --leader-elect=false --profiling=false
wait_until "kube-controller-manager /healthz" 60 curl -fsSk "https://127.0.0.1:$kcm_port/healthz"
wait_until "kube-scheduler /healthz" 60 curl -fsSk "https://127.0.0.1:$scheduler_port/healthz"
# Pods can be created only once the service-account controller made the default account.
wait_until "the default service account" 60 \
  "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig" -n default get serviceaccount default

((with_node)) && "$cluster_scripts/node-up.sh"
log "up: export KUBECONFIG=$state/admin.kubeconfig (apiserver $server)"
