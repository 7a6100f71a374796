#!/usr/bin/env bash
# The test node's network on the host: `up` records the sysctls the node will change, creates
# the bridge with the node's address and guards the FORWARD chain; `down` undoes all of it.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# guard ACTION MATCH: one FORWARD guard rule (MATCH is a list of iptables words).
guard() {
  # shellcheck disable=SC2086
  iptables "$1" FORWARD $2 -m comment --comment "$guard_comment" -j DROP 2>/dev/null
}

case "${1:-}" in
up)
  mkdir -p "$node_dir"
  [[ -f "$node_dir/sysctl.before" ]] || sysctl -e "${node_sysctls[@]}" >"$node_dir/sysctl.before"
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "$node_ip/24" dev "$bridge"
  fi
  ip link set "$bridge" up
  for g in "${forward_guards[@]}"; do guard -C "$g" || guard -I "$g"; done
  ;;
down)
  for g in "${forward_guards[@]}"; do while guard -C "$g"; do guard -D "$g"; done; done
  ip link del "$bridge" 2>/dev/null || true
  conntrack -D -s "$pod_cidr" >/dev/null 2>&1 || true
  conntrack -D -d "$service_cidr" >/dev/null 2>&1 || true
  if [[ -f "$node_dir/sysctl.before" ]]; then
    sed 's/ = /=/' "$node_dir/sysctl.before" | xargs sysctl -q -w
  fi
  ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
