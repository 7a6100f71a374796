#!/usr/bin/env bash
# Runs the end-to-end suites against the test cluster. Brings the cluster up when it is
# not already up, and then tears it down again; a cluster someone else started is left alone.
set -euo pipefail
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"
cd "$repo_root"

if [[ -f "$state/admin.kubeconfig" ]] && "$state/bin/kubectl" --kubeconfig "$state/admin.kubeconfig" get --raw /readyz >/dev/null 2>&1; then
  log "using the running test cluster"
else
  e2e/cluster/up.sh
  trap 'e2e/cluster/down.sh' EXIT
fi
node --test --test-reporter=spec --test-concurrency=1 "${@:-e2e/**/*.test.ts}"
