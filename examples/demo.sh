#!/usr/bin/env bash
# The main job, end to end, on the test cluster's real node: the operator installed with Helm
# (two replicas, one leading, sharing a PostgreSQL session store), a platform team's
# ClusterConnections (their credentials in the operator's namespace) and AccessPolicy, mallory's
# run Denied, and alice's run of the example LangGraph graph: the
# sidecar starts first and fetches the run's credential from the operator, the graph reads a
# real knowledge-base API and PostgreSQL through it (masked), keeps LangGraph's checkpoints in
# that database, and is refused a write and a GRANT; the run ends Succeeded, its credentials are
# revoked, and its session is counted and read back with `kubectl jit logs`. Then a run that
# waits for bob's approval before it starts, and whose write bob approves mid-run; and a tagged
# Deployment whose pod gets the sidecar, a run and a credential of its own. The people are the
# identity provider's (the test cluster's Dex): alice and bob sign in through an exec credential
# helper, and Kubernetes knows them as oidc:alice@example.com in group oidc:ml-platform, and so on.
set -euo pipefail
# shellcheck source=../e2e/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/cluster/lib.sh"
cd "$repo_root"
export PATH="$repo_root/node_modules/.bin:$PATH"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# admin holds the cluster's client certificate; everyone else signs in at the identity provider.
kubeconfig_of() { if [[ "$1" == admin ]]; then echo "$state/admin.kubeconfig"; else echo "$state/oidc/$1.kubeconfig"; fi; }
kubectl_as() { local who="$1"; shift; "$state/bin/kubectl" --kubeconfig "$(kubeconfig_of "$who")" "$@"; }
# The kubectl plugin, found on PATH as users install it (plugins take no flags before their name).
jit_as() { local who="$1"; shift; PATH="$PWD/cli/bin:$PATH" KUBECONFIG="$(kubeconfig_of "$who")" "$state/bin/kubectl" jit "$@"; }
# wait_for WHAT SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what="$1" seconds="$2"; shift 2
  for _ in $(seq $((seconds * 2))); do "$@" >/dev/null 2>&1 && return; sleep 0.5; done
  die "timed out after ${seconds}s waiting for $what"
}
phase_of() { kubectl_as admin -n agents get lgr "$1" -o jsonpath='{.status.phase}'; }
is_denied() { [[ "$(phase_of "$1")" == Denied ]]; }
# The session is complete once both refusals are in and the count holds still for 2 s.
session_events() { kubectl_as admin -n agents get lgr "$1" -o jsonpath='{.status.session.events}/{.status.session.denied}'; }
session_complete() {
  local before; before="$(session_events "$1")"
  [[ "$before" == */2 ]] && sleep 2 && [[ "$(session_events "$1")" == "$before" ]]
}
run_gone_or_revoked() {
  local revoked
  revoked="$(kubectl_as admin -n agents get lgr "$1" -o jsonpath='{.status.credential.revokedAt}' 2>/dev/null)" || return 0
  [[ -n "$revoked" ]]
}
is_phase() { [[ "$(phase_of "$1")" == "$2" ]]; }
# The first held command waiting for a decision, as the approvers see it.
pending_command() {
  local name
  name="$(kubectl_as bob -n agents get heldcommands -o jsonpath='{.items[?(@.status.phase=="Pending")].metadata.name}')"
  [[ -n "$name" ]] && echo "${name%% *}"
}
# The count holds still for 2 s.
session_settled() {
  local before; before="$(session_events "$1")"
  [[ -n "$before" && "$before" != / ]] && sleep 2 && [[ "$(session_events "$1")" == "$before" ]]
}
is_revoked() { [[ -n "$(kubectl_as admin -n agents get lgr "$1" -o jsonpath='{.status.credential.revokedAt}')" ]]; }

step "test cluster with its node (images built locally)"
e2e/cluster/up.sh

step "the demo's services: a PostgreSQL for sessions and a knowledge-base API, beside the node"
kubectl_as admin apply -f examples/namespace.yaml >/dev/null
stop demo-services
setsid node examples/demo-services.ts </dev/null >"$logs/demo-services.log" 2>&1 &
echo "$! $(readlink -f "$(command -v node)")" >"$pids/demo-services.pid"
wait_for "the demo's services" 60 grep -q '^ready' "$logs/demo-services.log"
grep '^ready' "$logs/demo-services.log"

step "helm install langgraph-jit (the images the node has: localhost/lgjit/*:test)"
"$state/bin/helm" --kubeconfig "$state/admin.kubeconfig" upgrade --install langgraph-jit \
  charts/langgraph-jit --namespace langgraph-jit --create-namespace \
  --set image.repository=localhost/lgjit/operator,image.tag=test,image.pullPolicy=Never \
  --set sidecar.image=localhost/lgjit/sidecar:test,sidecar.pullPolicy=Never \
  --set replicaCount=2,sessionStore.postgresSecret.name=session-store,sessionStore.postgresSecret.key=url \
  --set podInjection.enabled=true \
  --wait --timeout 3m
kubectl_as admin -n langgraph-jit get pods -o wide
echo "leader: $(kubectl_as admin -n langgraph-jit get lease langgraph-jit -o jsonpath='{.spec.holderIdentity}')"

step "who is who: alice, bob and mallory sign in at the identity provider (Dex)"
for who in alice bob mallory; do
  echo "  $who: $(kubectl_as "$who" auth whoami -o jsonpath='{.status.userInfo.username} in {.status.userInfo.groups}')"
done

step "the platform team: namespace, ClusterConnections and an AccessPolicy for IdP group ml-platform (as admin)"
kubectl_as admin apply -f examples/namespace.yaml -f examples/connections.yaml \
  -f examples/accesspolicy.yaml
kubectl_as admin get clusterconnections
echo "the credentials, in the operator's namespace:"
kubectl_as admin -n langgraph-jit get secrets kb-admin kb-db-ca kb-api | sed 's/^/  /'
echo "carol (ClusterRole edit in agents) reads every Secret there, and none of them:"
kubectl_as carol -n agents get secrets 2>&1 | sed 's/^/  /'
kubectl_as carol -n langgraph-jit get secret kb-admin 2>&1 | sed 's/^/  /' || true

step "alice (IdP group ml-platform) and mallory (no groups) each apply a LangGraphRun"
kubectl_as alice delete -f examples/run-alice.yaml --ignore-not-found --wait >/dev/null
kubectl_as mallory delete -f examples/run-mallory.yaml --ignore-not-found --wait >/dev/null
kubectl_as alice apply -f examples/run-alice.yaml
kubectl_as mallory apply -f examples/run-mallory.yaml
wait_for "mallory's run to be denied" 30 is_denied kb-refresh-mallory

step "why mallory's run was denied"
kubectl_as admin -n agents get lgr kb-refresh-mallory \
  -o jsonpath='{range .status.conditions[?(@.type=="Authorized")]}{.reason}: {.message}{"\n"}{end}'

step "alice's run on the node: sidecar first, then the graph"
last=""
for _ in $(seq 240); do
  phase="$(phase_of kb-search-alice)"
  [[ "$phase" != "$last" ]] && echo "$(date +%T) kb-search-alice is ${phase:-new}"
  last="$phase"
  [[ "$phase" == Succeeded || "$phase" == Failed || "$phase" == Expired ]] && break
  sleep 0.5
done
[[ "$phase" == Succeeded ]] || die "alice's run ended $phase"
kubectl_as admin -n agents get lgr -o wide
pod="$(kubectl_as admin -n agents get pods -l langgraph-jit.dev/run=kb-search-alice -o jsonpath='{.items[0].metadata.name}')"
kubectl_as admin -n agents get pod "$pod" -o jsonpath='{range .status.initContainerStatuses[*]}  {.name}: started {.state.terminated.startedAt}, exited {.state.terminated.exitCode} at {.state.terminated.finishedAt}{"\n"}{end}{range .status.containerStatuses[*]}  {.name}: started {.state.terminated.startedAt}, exited {.state.terminated.exitCode} at {.state.terminated.finishedAt}{"\n"}{end}'
echo "the sidecar's log:"
kubectl_as admin -n agents logs "$pod" -c langgraph-jit-sidecar | sed 's/^/  /' | tail -n 8
echo "the graph's output:"
kubectl_as admin -n agents logs "$pod" -c graph | sed 's/^/  /'
echo "what reached the knowledge-base API:"
grep '^kb-api saw' "$logs/demo-services.log" | sed 's/^/  /'

step "the run's credential: issued to the sidecar, revoked when the run ended"
wait_for "the credential's revocation" 30 is_revoked kb-search-alice
kubectl_as admin -n agents get lgr kb-search-alice -o jsonpath='  credential: {.status.credential}{"\n"}'
wait_for "the session counts" 30 session_complete kb-search-alice
kubectl_as admin -n agents get lgr kb-search-alice -o jsonpath='  session: {.status.session}{"\n"}'
kubectl_as admin -n agents get events --field-selector involvedObject.name=kb-search-alice \
  -o custom-columns=REASON:.reason,MESSAGE:.message --sort-by=.lastTimestamp

step "the run's session as alice reads it: kubectl jit logs kb-search-alice"
jit_as alice logs kb-search-alice -n agents | sed 's/^/  /'
echo "bob is not in alice's team:"
jit_as bob logs kb-search-alice -n agents 2>&1 | sed 's/^/  /' || true

step "a run that needs a human yes: alice asks to write to the knowledge base"
kubectl_as admin apply -f examples/accesspolicy-writers.yaml
kubectl_as alice delete -f examples/run-alice-write.yaml --ignore-not-found --wait >/dev/null
kubectl_as alice apply -f examples/run-alice-write.yaml
wait_for "the run to wait for approval" 30 is_phase kb-update-alice AwaitingApproval
echo "what waits for bob (IdP group security):"
jit_as bob approvals -n agents | sed 's/^/  /'
echo "alice may not approve her own run (RBAC refuses her first; the webhook would too):"
jit_as alice approve kb-update-alice -n agents --reason "mine" 2>&1 | sed 's/^/  /' || true
jit_as bob approve kb-update-alice -n agents --reason "incident write-ups belong there" | sed 's/^/  /'

step "the run's write is held mid-run until bob approves that one write"
wait_for "the write to be held" 120 pending_command
held="$(pending_command)"
jit_as bob approvals -n agents -o wide | sed 's/^/  /'
echo "what reached the knowledge-base API so far: $(grep -c '^kb-api saw POST' "$logs/demo-services.log" || true) POST(s)"
jit_as bob approve "$held" -n agents --reason "the write-up is reviewed" | sed 's/^/  /'
wait_for "alice's write run to end" 120 is_phase kb-update-alice Succeeded
echo "what reached the knowledge-base API:"
grep '^kb-api saw POST' "$logs/demo-services.log" | sed 's/^/  /'
wait_for "the write run's session" 30 session_settled kb-update-alice
echo "its session: who let it start, and the held write with its decision"
jit_as alice logs kb-update-alice -n agents | sed 's/^/  /'

step "a tagged Deployment: an existing service opted in with a label and an annotation"
kubectl_as admin delete -f examples/tagged-deployment.yaml --ignore-not-found --wait >/dev/null
kubectl_as admin apply -f examples/tagged-deployment.yaml
kubectl_as admin -n agents rollout status deployment/kb-server --timeout=180s
server="$(kubectl_as admin -n agents get pods -l app=kb-server -o jsonpath='{.items[0].metadata.name}')"
echo "its pod, with the sidecar injected: $(kubectl_as admin -n agents get pod "$server" -o jsonpath='{.spec.initContainers[*].name} + {.spec.containers[*].name}')"
echo "its run, the pod's ServiceAccount as requester:"
kubectl_as admin -n agents get lgr "$server" | sed 's/^/  /'
echo "carol may exec into its graph, never into its sidecar, which holds the credential:"
kubectl_as carol -n agents exec "$server" -c graph -- node -e 'console.log("  in the graph container: LGJIT_KB_POSTGRES_URL=" + process.env.LGJIT_KB_POSTGRES_URL)'
kubectl_as carol -n agents exec "$server" -c langgraph-jit-sidecar -- true 2>&1 | sed 's/^/  /' || true
address="$(kubectl_as admin -n agents get pod "$server" -o jsonpath='{.status.podIP}')"
echo "POST http://$address:8080/invoke (one run of the graph, through the pod's sidecar):"
node -e 'fetch(process.argv[1], {method: "POST"}).then((r) => r.text()).then((t) => process.stdout.write(t))' "http://$address:8080/invoke" | sed 's/^/  /'
wait_for "the served run's session" 30 session_settled "$server"
jit_as alice logs "$server" -n agents | sed 's/^/  /'
kubectl_as admin -n agents delete deployment kb-server --wait >/dev/null
wait_for "the pod's credential to be revoked" 60 run_gone_or_revoked "$server"
echo "the Deployment is deleted: its pod's run is gone with it, its credential revoked"

step "a forged requester is refused by the admission webhook"
kubectl_as mallory apply -f - <<'RUN' || true
apiVersion: langgraph-jit.dev/v1alpha1
kind: LangGraphRun
metadata:
  name: kb-refresh-forged
  namespace: agents
  annotations:
    langgraph-jit.dev/requester: '{"username":"oidc:alice@example.com","groups":["oidc:ml-platform"]}'
spec:
  template: {spec: {containers: [{name: graph, image: localhost/lgjit/graph:test}]}}
  access: [{connection: kb-postgres, actions: [read]}]
RUN

step "alice's run may not take what alice may not: a Secret of the namespace"
kubectl_as alice apply -f - <<'RUN' || true
apiVersion: langgraph-jit.dev/v1alpha1
kind: LangGraphRun
metadata:
  name: kb-search-greedy
  namespace: agents
spec:
  template:
    spec:
      containers:
        - name: graph
          image: localhost/lgjit/graph:test
          env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: kb-api, key: token}}}]
  access: [{connection: kb-api, actions: [read]}]
RUN

cat <<DONE

The cluster and the operator keep running: export KUBECONFIG=$state/admin.kubeconfig
(or the identity provider's users: oidc/alice.kubeconfig, oidc/bob.kubeconfig, oidc/carol.kubeconfig,
oidc/mallory.kubeconfig) and explore; \`make cluster-down\` stops both.
DONE
