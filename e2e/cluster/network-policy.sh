#!/usr/bin/env bash
# Turns the test node's NetworkPolicy enforcement off and on again (kube-router), for the tests
# of what holds without it: in-pod capture.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
off) stop_kube_router ;;
on) pid_alive "$pids/kube-router.pid" || start_kube_router ;;
*) echo "usage: $0 on|off" >&2; exit 2 ;;
esac
