#!/usr/bin/env bash
# Stops exactly the processes cluster-up started (by their pid files) and removes its state.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d "$state" ]] || { log "nothing to tear down"; exit 0; }

# Stop in reverse start order (the demo's sidecar and operator first) so nothing logs a storm of errors
# about a vanished peer.
for name in sidecar operator kube-scheduler kube-controller-manager kube-apiserver etcd; do
  file="$pids/$name.pid"
  pid_alive "$file" || continue
  read -r pid _ <"$file"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do pid_alive "$file" || break; sleep 0.1; done
  if pid_alive "$file"; then kill -KILL "$pid" 2>/dev/null || true; fi
done
rm -rf "$state"
log "down"
