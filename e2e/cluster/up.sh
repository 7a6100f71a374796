#!/usr/bin/env bash
# Starts the test cluster on loopback: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler built from upstream, with kubeconfigs for admin and the test identities.
# Idempotent: when the cluster is already up it says so and changes nothing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

components=(etcd kube-apiserver kube-controller-manager kube-scheduler)
service_cidr=10.96.0.0/16
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
cat >"$state/ports.env" <<PORTS
ETCD_PORT=$etcd_port
API_PORT=$api_port
KUBE_CONTROLLER_MANAGER_PORT=$kcm_port
KUBE_SCHEDULER_PORT=$scheduler_port
PORTS
server="https://127.0.0.1:$api_port"

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
for identity in admin kube-controller-manager kube-scheduler alice bob mallory; do
  write_kubeconfig "$identity"
done

# start NAME ARGS...: runs a component in its own session, its pid file naming pid and binary.
start() {
  local name="$1"; shift
  setsid "$bin/$name" "$@" </dev/null >"$logs/$name.log" 2>&1 &
  echo "$! $(readlink -f "$bin/$name")" >"$pids/$name.pid"
}

# wait_until WHAT SECONDS COMMAND...: polls until COMMAND succeeds, failing with the logs.
wait_until() {
  local what="$1" seconds="$2" deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${seconds}s waiting for $what; last log lines:"
      tail -n 20 "$logs"/*.log >&2
      exit 1
    fi
    for c in "${components[@]}"; do
      if [[ -f "$pids/$c.pid" ]] && ! pid_alive "$pids/$c.pid"; then
        log "$c exited; its log:"
        tail -n 30 "$logs/$c.log" >&2
        exit 1
      fi
    done
    sleep 0.5
  done
}

log "starting etcd on 127.0.0.1:$etcd_port"
# --unsafe-no-fsync: a throwaway test store on a shared VM disk; durability buys nothing here.
start etcd --name lgjit --data-dir "$state/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "lgjit=http://127.0.0.1:$etcd_peer_port" \
  --log-level warn --unsafe-no-fsync
wait_until "etcd" 60 curl -fsS "http://127.0.0.1:$etcd_port/health"

log "starting kube-apiserver on $server"
start kube-apiserver \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --cert-dir "$state/apiserver-certs" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
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

log "up: export KUBECONFIG=$state/admin.kubeconfig (apiserver $server)"
