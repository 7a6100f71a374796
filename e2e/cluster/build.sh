#!/usr/bin/env bash
# Builds the pinned upstream binaries of the test cluster from Go modules into a cache
# outside the repo, and prints the cache's bin directory. A no-op when they are built.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache_root="${LGJIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/langgraph-jit}"
bin="$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION/bin"
k8s_components=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
# The node's tools and the OpenID provider have their own cache folders (linked into bin), so
# bumping one rebuilds only it.
node_tools=(coredns crictl kube-router)
wanted=("${k8s_components[@]}" etcd helm "${node_tools[@]}" dex)

log() { printf '[cluster-build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

all_built() {
  local name
  for name in "${wanted[@]}"; do [[ -x "$bin/$name" ]] || return 1; done
}

if all_built; then echo "$bin"; exit 0; fi
if ! command -v go >/dev/null; then
  log "error: Go (1.24 or newer) builds the test cluster and is not on PATH: install it from https://go.dev/dl"
  exit 1
fi
mkdir -p "$bin"
export GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Prints "replace k8s.io/x => k8s.io/x v0.N.P" for each staging module k8s.io/kubernetes uses.
staging_replaces() {
  local gomod staging_version="v0${K8S_VERSION#v1}"
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  awk '/^\t*k8s\.io\/[a-z0-9-]+ => \.\/staging\// {print $1}' "$gomod" | sort -u |
    while read -r mod; do echo "replace $mod => $mod $staging_version"; done
}

build_kubernetes() {
  local dir="$work/kubernetes" ldflags pkgs=() c
  mkdir -p "$dir" && cd "$dir"
  log "resolving k8s.io/kubernetes $K8S_VERSION and its staging modules"
  {
    echo "module lgjit.local/kubernetes-build"
    echo "go 1.24"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    staging_replaces
  } >go.mod
  for c in "${k8s_components[@]}"; do
    [[ -x "$bin/$c" ]] || pkgs+=("k8s.io/kubernetes/cmd/$c")
  done
  printf 'package tools\n\nimport (\n' >tools.go
  for c in "${pkgs[@]}"; do printf '\t_ "%s"\n' "$c" >>tools.go; done
  printf ')\n' >>tools.go
  sed -i '1i //go:build tools' tools.go
  go mod tidy >&2
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for c in "${pkgs[@]}"; do
    log "building ${c##*/} $K8S_VERSION (the first build takes several minutes)"
    go build -trimpath -ldflags "$ldflags" -o "$bin/${c##*/}" "$c"
  done
}

build_etcd() {
  local dir="$work/etcd"
  mkdir -p "$dir" && cd "$dir"
  log "building etcd $ETCD_VERSION"
  printf 'module lgjit.local/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
}

build_helm() {
  local dir="$work/helm"
  mkdir -p "$dir" && cd "$dir"
  log "building helm $HELM_VERSION"
  printf 'module lgjit.local/helm-build\n\ngo 1.24\n\nrequire helm.sh/helm/v3 %s\n' "$HELM_VERSION" >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "helm.sh/helm/v3/cmd/helm"\n' >tools.go
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    -o "$bin/helm" helm.sh/helm/v3/cmd/helm
}

# build_tool NAME VERSION MODULE PACKAGE: builds a Go command into its own cache folder.
build_tool() {
  local name="$1" version="$2" module="$3" package="$4" dir="$work/$1"
  local out="$cache_root/$name-$version"
  if [[ ! -x "$out/$name" ]]; then
    mkdir -p "$dir" "$out" && cd "$dir"
    log "building $name $version"
    printf 'module lgjit.local/%s-build\n\ngo 1.24\n\nrequire %s %s\n' "$name" "$module" "$version" >go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$package" >tools.go
    go mod tidy >&2
    go build -trimpath -ldflags "-s -w" -o "$out/$name.partial" "$package"
    mv "$out/$name.partial" "$out/$name"
  fi
  ln -sfn "$out/$name" "$bin/$name"
}

build_tool coredns "$COREDNS_VERSION" github.com/coredns/coredns github.com/coredns/coredns
build_tool crictl "$CRICTL_VERSION" sigs.k8s.io/cri-tools sigs.k8s.io/cri-tools/cmd/crictl
build_tool kube-router "$KUBE_ROUTER_VERSION" github.com/cloudnativelabs/kube-router/v2 \
  github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
build_tool dex "$DEX_VERSION" github.com/dexidp/dex github.com/dexidp/dex/cmd/dex
[[ -x "$bin/etcd" ]] || build_etcd
[[ -x "$bin/helm" ]] || build_helm
for c in "${k8s_components[@]}"; do [[ -x "$bin/$c" ]] || { build_kubernetes; break; }; done
all_built || { log "some binaries are missing from $bin"; exit 1; }
log "all binaries are in $bin"
echo "$bin"
