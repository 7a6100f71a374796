#!/usr/bin/env bash
# The machine's tools that `make test`, `make demo` and `make bench` need beyond npm's: Debian
# packages installed when missing (as root, with apt-get), or one line naming them and the
# command that installs them. Usage: e2e/host-packages.sh [bench]
set -euo pipefail

packages=(ca-certificates curl git iproute2 make openssl shellcheck
  # the tests start their own PostgreSQL servers and drive them with psql, pgbench and \copy
  postgresql
  # the HTTPS interception is tested with real clients
  python3-requests
  # the test node: container runtime, CNI, kube-proxy's iptables, image builds
  containerd runc containernetworking-plugins iptables ipset conntrack debootstrap podman gcc libc6-dev)
# the benchmarks' baselines
[[ "${1:-}" == bench ]] && packages+=(nginx-light pgbouncer)

installed="$(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null | awk '/ok installed$/ {print $1}' || true)"
missing=()
for package in "${packages[@]}"; do
  grep -qx "$package" <<<"$installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
