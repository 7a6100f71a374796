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

# True when the pid file names a live process running the binary it was started from.
pid_alive() {
  local file="$1" pid exe
  [[ -f "$file" ]] || return 1
  read -r pid exe <"$file"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  [[ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]]
}

# Picks an unused TCP port on 127.0.0.1 that no earlier call has handed out.
declare -A handed_out_ports=()
free_port() {
  local port busy
  busy="$(ss -Htln | awk '{print $4}' | sed 's/.*://')"
  while :; do
    port=$((20000 + RANDOM % 20000))
    [[ -z "${handed_out_ports[$port]:-}" ]] || continue
    grep -qx "$port" <<<"$busy" && continue
    handed_out_ports[$port]=1
    echo "$port"
    return
  done
}
