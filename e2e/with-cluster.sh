#!/usr/bin/env bash
# Runs a command (the e2e suites, a benchmark) against the test cluster. Brings the cluster up
# when it is not already up, and then tears it down again; a cluster already running is left alone.
set -euo pipefail
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"
cd "$repo_root"

if [[ -f "$state/admin.kubeconfig" ]] && "$state/bin/kubectl" --kubeconfig "$state/admin.kubeconfig" get --raw /readyz >/dev/null 2>&1; then
  log "using the running test cluster"
  # `make demo` leaves its operator installed: it would reconcile these runs too, and its
  # sessions APIService is the cluster's only one.
  helm=("$state/bin/helm" --kubeconfig "$state/admin.kubeconfig" --namespace langgraph-jit)
  if "${helm[@]}" status langgraph-jit >/dev/null 2>&1; then
    log "uninstalling the demo's release langgraph-jit"
    "${helm[@]}" uninstall langgraph-jit --wait >/dev/null
  fi
  stop demo-services
  # Its ClusterConnections are cluster-scoped and outlive the release.
  "$state/bin/kubectl" --kubeconfig "$state/admin.kubeconfig" delete -f examples/connections.yaml \
    --ignore-not-found --wait=false >/dev/null
else
  e2e/cluster/up.sh
  trap 'e2e/cluster/down.sh' EXIT
fi
"$@"
