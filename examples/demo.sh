#!/usr/bin/env bash
# The main job, end to end: a test cluster, the operator running against it, and two runs of
# the same graph: alice's (group ml-platform) is authorized and gets its Job, mallory's is Denied.
set -euo pipefail
# shellcheck source=../e2e/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/cluster/lib.sh"
cd "$repo_root"
export PATH="$repo_root/node_modules/.bin:$PATH"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
kubectl_as() { local who="$1"; shift; "$state/bin/kubectl" --kubeconfig "$state/$who.kubeconfig" "$@"; }

step "test cluster"
e2e/cluster/up.sh

step "operator: CRDs, webhook certificate and configurations, then the operator in the background"
flags=(--kubeconfig "$state/admin.kubeconfig" --listen 127.0.0.1:9443 --metrics-listen 127.0.0.1:9080
  --webhook-url https://127.0.0.1:9443 --operator-url https://127.0.0.1:9443)
operator/bin/operator install "${flags[@]}" --log-level warn
if ! pid_alive "$pids/operator.pid"; then
  setsid operator/bin/operator run "${flags[@]}" </dev/null >"$logs/operator.log" 2>&1 &
  echo "$! $(readlink -f "$(command -v node)")" >"$pids/operator.pid"
fi
for _ in $(seq 60); do curl -fsS http://127.0.0.1:9080/readyz >/dev/null 2>&1 && break; sleep 0.5; done
curl -fsS http://127.0.0.1:9080/readyz >/dev/null || { tail -20 "$logs/operator.log"; die "the operator did not become ready"; }
log "operator ready (log: $logs/operator.log, metrics: http://127.0.0.1:9080/metrics)"

step "the platform team: namespace, Connections and an AccessPolicy for group ml-platform (as admin)"
kubectl_as admin apply -f examples/namespace.yaml -f examples/connections.yaml -f examples/accesspolicy.yaml

step "alice (group ml-platform) and mallory (no groups) each apply a LangGraphRun"
kubectl_as alice apply -f examples/run-alice.yaml
kubectl_as mallory apply -f examples/run-mallory.yaml

for run in kb-refresh-alice kb-refresh-mallory; do
  for _ in $(seq 60); do
    phase="$(kubectl_as admin -n agents get lgr "$run" -o jsonpath='{.status.phase}')"
    [[ -n "$phase" && "$phase" != Pending ]] && break
    sleep 0.5
  done
done

step "kubectl get lgr -o wide"
kubectl_as admin -n agents get lgr -o wide

step "why mallory's run was denied"
kubectl_as admin -n agents get lgr kb-refresh-mallory \
  -o jsonpath='{range .status.conditions[?(@.type=="Authorized")]}{.reason}: {.message}{"\n"}{end}'

step "alice's Job: the graph, and the sidecar injected as a native sidecar"
kubectl_as admin -n agents get jobs -l langgraph-jit.dev/run=kb-refresh-alice
kubectl_as admin -n agents get job kb-refresh-alice -o jsonpath='{range .spec.template.spec.initContainers[*]}  init container {.name} (restartPolicy {.restartPolicy}){"\n"}{end}{range .spec.template.spec.containers[*]}  container {.name}: {range .env[?(@.name=="DATABASE_URL")]}DATABASE_URL={.value}{end}{"\n"}{end}'

step "a forged requester is refused by the admission webhook"
kubectl_as mallory apply -f - <<'RUN' || true
apiVersion: langgraph-jit.dev/v1alpha1
kind: LangGraphRun
metadata:
  name: kb-refresh-forged
  namespace: agents
  annotations:
    langgraph-jit.dev/requester: '{"username":"alice@example.com","groups":["ml-platform"]}'
spec:
  template: {spec: {containers: [{name: graph, image: langgraph-jit/example-graph:0.1.0}]}}
  access: [{connection: kb-postgres, actions: [read]}]
RUN

cat <<DONE

The cluster and the operator keep running: export KUBECONFIG=$state/admin.kubeconfig
(or alice.kubeconfig, bob.kubeconfig, mallory.kubeconfig) and explore; \`make cluster-down\` stops both.
DONE
