#!/usr/bin/env bash
# Removes everything node-up.sh and node-network.sh made, in the order that leaves nothing
# behind: the kubelet first (so it recreates nothing), then every pod through the CRI (CNI DEL,
# network namespaces), containerd and its shims, mounts, cgroups, iptables chains, the bridge
# and the sysctls. Safe to run on a half-started node.
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d "$node_dir" ]] || exit 0
socket="$node_dir/containerd/containerd.sock"

stop_kube_router
stop kube-proxy
stop kubelet
if [[ -S "$socket" ]] && pid_alive "$pids/containerd.pid"; then
  log "removing the node's pods"
  crictl=("$state/bin/crictl" --runtime-endpoint "unix://$socket" --timeout 20s)
  "${crictl[@]}" rmp --all --force >/dev/null 2>&1
  "${crictl[@]}" rm --all --force >/dev/null 2>&1
fi
stop containerd
# Shims outlive containerd; only those serving this node's socket are ours.
pkill -KILL -f "containerd-shim-runc-v2 .*-address $socket( |$)" 2>/dev/null
sleep 0.2

# The kubelet binds its root folder onto itself; pods add volumes, rootfs overlays and netns.
findmnt -rn -o TARGET | grep "^$node_dir/" | sort -r | while read -r mount; do
  umount "$mount" 2>/dev/null || umount -l "$mount"
done
for hierarchy in /sys/fs/cgroup/*/; do
  [[ -d "$hierarchy/kubepods" ]] && find "$hierarchy/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
done

# kube-proxy's rules, then whatever KUBE-* chains remain (the kubelet's), in both families.
"$state/bin/kube-proxy" --cleanup --v=0 >/dev/null 2>&1
for iptables in iptables ip6tables; do
  for table in filter nat mangle; do
    "$iptables" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -v '^-A KUBE-' |
      sed 's/^-A/-D/' | while read -r rule; do
        # shellcheck disable=SC2086 # a rule as iptables-save prints it, comments unquoted below
        eval "$iptables -t $table $rule"
      done
    chains="$("$iptables" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}')"
    for chain in $chains; do "$iptables" -t "$table" -F "$chain"; done
    for chain in $chains; do "$iptables" -t "$table" -X "$chain"; done
  done
done

# containerd 1.6 and libcni keep shim sockets and results in fixed host folders: drop them if empty.
rmdir /run/containerd/s /run/containerd /var/lib/cni/results /var/lib/cni 2>/dev/null

"$cluster_scripts/node-network.sh" down
rm -rf "$node_dir"

# Say so if anything the node made is still there.
leftovers="$(
  findmnt -rn -o TARGET | grep "^$node_dir/"
  ip link show "$bridge" 2>/dev/null | head -n1
  iptables-save 2>/dev/null | grep -E "^:KUBE-|$guard_comment"
  ipset list -n 2>/dev/null | grep -iE "^kube-"
  pgrep -a -f "containerd-shim-runc-v2 .*-address $node_dir/"
  ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null
)" || true
if [[ -n "$leftovers" ]]; then
  log "the node left these behind:"
  printf '%s\n' "$leftovers" >&2
  exit 1
fi
log "node removed, nothing left behind"
