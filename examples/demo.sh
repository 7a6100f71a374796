#!/usr/bin/env bash
# The main job, end to end: a test cluster, the operator running against it, and runs of the
# same graph: alice's (group ml-platform) is authorized and gets its Job, mallory's is Denied,
# and a second run of alice's gets its credential into its sidecar until alice deletes it.
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
kubectl_as admin apply -f examples/namespace.yaml -f examples/secrets.yaml \
  -f examples/connections.yaml -f examples/accesspolicy.yaml

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

step "alice's kb-search run: its sidecar proves its pod and receives the run's credential"
# The test cluster has no node yet, so the pod stays Pending: the real sidecar process runs
# here, with the token the kubelet would project into it (bound to the pod, audience langgraph-jit).
kubectl_as alice apply -f examples/run-alice-search.yaml
for _ in $(seq 60); do
  pod="$(kubectl_as admin -n agents get pods -l langgraph-jit.dev/run=kb-search-alice -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)"
  [[ -n "$pod" ]] && break
  sleep 0.5
done
[[ -n "$pod" ]] || die "the kb-search-alice run got no pod"
pod_uid="$(kubectl_as admin -n agents get pod "$pod" -o jsonpath='{.metadata.uid}')"
run_uid="$(kubectl_as admin -n agents get lgr kb-search-alice -o jsonpath='{.metadata.uid}')"
sidecar_dir="$state/demo-sidecar"
mkdir -p "$sidecar_dir"
kubectl_as admin -n agents create token default --audience langgraph-jit --duration 10m \
  --bound-object-kind Pod --bound-object-name "$pod" --bound-object-uid "$pod_uid" >"$sidecar_dir/token"
kubectl_as admin -n langgraph-jit get secret langgraph-jit-webhook-tls \
  -o jsonpath='{.data.ca-bundle\.crt}' | base64 -d >"$sidecar_dir/operator-ca.crt"
if pid_alive "$pids/sidecar.pid"; then read -r old _ <"$pids/sidecar.pid"; kill "$old"; fi
LGJIT_RUN=kb-search-alice LGJIT_RUN_UID="$run_uid" LGJIT_NAMESPACE=agents LGJIT_POD_NAME="$pod" \
  LGJIT_POD_UID="$pod_uid" LGJIT_OPERATOR_URL=https://127.0.0.1:9443 \
  LGJIT_OPERATOR_CA_FILE="$sidecar_dir/operator-ca.crt" LGJIT_TOKEN_FILE="$sidecar_dir/token" \
  LGJIT_STATE_DIR="$sidecar_dir" LGJIT_ADMIN_PORT=15020 \
  setsid sidecar/bin/sidecar </dev/null >"$logs/sidecar.log" 2>&1 &
echo "$! $(readlink -f "$(command -v node)")" >"$pids/sidecar.pid"
for _ in $(seq 60); do curl -fsS http://127.0.0.1:15020/ready >/dev/null 2>&1 && break; sleep 0.5; done
echo "sidecar /ready: $(curl -sS http://127.0.0.1:15020/ready)"
kubectl_as admin -n agents get lgr kb-search-alice \
  -o jsonpath='{range .status.conditions[?(@.type=="CredentialIssued")]}{.type}={.status}: {.message}{"\n"}{end}credential: {.status.credential}{"\n"}'

step "alice deletes the run: its credential is revoked and the sidecar drops it"
started=$(date +%s%N)
kubectl_as alice -n agents delete lgr kb-search-alice --wait=false
for _ in $(seq 100); do
  [[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15020/ready)" == 503 ]] && break
  sleep 0.1
done
echo "sidecar /ready after $(( ($(date +%s%N) - started) / 1000000 )) ms: $(curl -sS http://127.0.0.1:15020/ready)"
read -r sidecar_pid _ <"$pids/sidecar.pid"
kill "$sidecar_pid"
rm -f "$pids/sidecar.pid"

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
