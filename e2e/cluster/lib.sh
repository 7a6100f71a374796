# shellcheck shell=bash disable=SC2034
# Shared paths and helpers of the test-cluster scripts (sourced, not run).
cluster_scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$cluster_scripts/../.." && pwd)"
state="${LGJIT_CLUSTER_DIR:-$repo_root/.cluster}"
pki="$state/pki"
pids="$state/pids"
logs="$state/logs"

log() { printf '[cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# stop NAME: stops a component started by `start`, SIGKILL after 5 s, and forgets its pid file.
stop() {
  local file="$pids/$1.pid" pid
  if pid_alive "$file"; then
    read -r pid _ <"$file"
    log "stopping $1 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do pid_alive "$file" || break; sleep 0.1; done
    if pid_alive "$file"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$file"
}

# True when the pid file names a live process running the binary it was started from.
pid_alive() {
  local file="$1" pid exe
  [[ -f "$file" ]] || return 1
  read -r pid exe <"$file"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  [[ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]]
}

# Picks an unused TCP port that no earlier call has handed out, below the NodePort range
# (30000-32767): a network plugin lets pods reach node ports on their node, and the API server
# listens on the node's address.
declare -A handed_out_ports=()
free_port() {
  local port busy
  busy="$(ss -Htln | awk '{print $4}' | sed 's/.*://')"
  while :; do
    port=$((20000 + RANDOM % 10000))
    [[ -z "${handed_out_ports[$port]:-}" ]] || continue
    grep -qx "$port" <<<"$busy" && continue
    handed_out_ports[$port]=1
    echo "$port"
    return
  done
}

# The test node (NODE=0 leaves it out). Its addresses are fixed: one test cluster per machine.
with_node="${NODE:-1}"
node_name=lgjit-node
node_dir="$state/node"
bridge=lgjit0
node_ip=10.244.0.1
pod_cidr=10.244.0.0/24
service_cidr=10.96.0.0/16
dns_ip=10.96.0.10
# Keep pod traffic on this machine: nothing is forwarded between the bridge and another link.
guard_comment="langgraph-jit test node: pod traffic stays on the machine"
forward_guards=(
  "-i $bridge ! -o $bridge"
  "! -i $bridge -o $bridge"
)
# Host settings the bridge plugin and the kubelet change; put back as they were by node-down.
node_sysctls=(net.ipv4.ip_forward net.ipv4.conf.all.accept_redirects kernel.panic kernel.panic_on_oops vm.overcommit_memory)

# start NAME ARGS...: runs a component in its own session, its pid file naming pid and binary.
# NAME is a binary in the cluster's bin folder, or on PATH (containerd).
start() {
  local name="$1" exe; shift
  exe="$state/bin/$name"
  [[ -x "$exe" ]] || exe="$(command -v "$name")"
  setsid "$exe" "$@" </dev/null >"$logs/$name.log" 2>&1 &
  echo "$! $(readlink -f "$exe")" >"$pids/$name.pid"
}

# wait_until WHAT SECONDS COMMAND...: polls until COMMAND succeeds, failing with the logs, or
# as soon as a component it started has exited.
wait_until() {
  local what="$1" seconds="$2" deadline file
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${seconds}s waiting for $what; last log lines:"
      tail -n 20 "$logs"/*.log >&2
      exit 1
    fi
    for file in "$pids"/*.pid; do
      if [[ ! -f "$file" ]] || pid_alive "$file"; then continue; fi
      log "$(basename "$file" .pid) exited; its log:"
      tail -n 30 "$logs/$(basename "$file" .pid).log" >&2
      exit 1
    done
    sleep 0.5
  done
}

# NetworkPolicy, enforced on the node: kube-router's firewall alone (the bridge CNI routes,
# kube-proxy proxies), with iptables and ipset on the host, as its daemonset would run it.
start_kube_router() {
  local health
  health="$(free_port)"
  log "starting kube-router (NetworkPolicy enforcement only)"
  start kube-router --kubeconfig "$state/kube-router.kubeconfig" --hostname-override "$node_name" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-ipv4=true --enable-ipv6=false --service-cluster-ip-range "$service_cidr" \
    --health-port "$health" --metrics-port 0
  wait_until "kube-router" 30 curl -fsS "http://127.0.0.1:$health/healthz"
}

# Stops kube-router and removes its rules and ipsets: NetworkPolicy is then not enforced.
# v2.1.0's --cleanup-config panics cleaning the proxy it never ran, partway through: what it
# leaves (jumps into its chains, the chains, then the sets they used) goes here. The kernel lets
# go of a set a moment after the last rule using it.
stop_kube_router() {
  local rule chain chains set attempt
  stop kube-router
  "$state/bin/kube-router" --cleanup-config >/dev/null 2>&1 || true
  iptables -S 2>/dev/null | grep -E '^-A (INPUT|FORWARD|OUTPUT) .*-j KUBE-ROUTER-' | sed 's/^-A/-D/' |
    while read -r rule; do
      # shellcheck disable=SC2086 # a rule as iptables -S prints it, comments quoted
      eval "iptables $rule"
    done || true
  chains="$(iptables -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-(ROUTER|POD-FW|NWPLCY)-/ {print $2}')"
  for chain in $chains; do iptables -F "$chain"; done
  for chain in $chains; do iptables -X "$chain"; done
  for attempt in $(seq 20); do
    for set in $(ipset list -n 2>/dev/null | grep -E '^KUBE-(SRC|DST)-'); do
      ipset destroy "$set" 2>/dev/null || true
    done
    ipset list -n 2>/dev/null | grep -qE '^KUBE-(SRC|DST)-' || return 0
    sleep 0.25
  done
  log "kube-router's ipsets are still in use after ${attempt} attempts"
  return 1
}
