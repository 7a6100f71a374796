#!/usr/bin/env bash
# Stops exactly the processes cluster-up started (by their pid files), removes the node and
# everything it made on the host, and removes the cluster's state.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d "$state" ]] || { log "nothing to tear down"; exit 0; }

# The node first, then the control plane in reverse start order, so nothing logs a storm of
# errors about a vanished peer.
stop demo-services
"$cluster_scripts/node-down.sh"
for name in kube-scheduler kube-controller-manager kube-apiserver dex etcd; do stop "$name"; done
rm -rf "$state"
log "down"
