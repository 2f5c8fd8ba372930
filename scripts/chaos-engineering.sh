#!/usr/bin/env bash
# The command names of the original request, on top of chaos-ctl:
#
#   ./scripts/chaos-engineering.sh experiment packet_loss --duration 300
#   ./scripts/chaos-engineering.sh experiment dependency_failure --budget 50.00
#   ./scripts/chaos-engineering.sh emergency-stop
#   ./scripts/chaos-engineering.sh status
#   ./scripts/chaos-engineering.sh report --last 24h
#
# Environment:
#   CHAOS_TARGET   target flags for `experiment`, e.g. "--cgroup /sys/fs/cgroup/app.slice" or
#                  "--pod-uid 8f3c...". Split on whitespace; never evaluated by a shell.
#   CHAOS_DAEMON   one daemon (default unix:///run/chaos/daemon.sock), or
#   CHAOS_DAEMONS  a file listing daemons (status, emergency-stop and report go to all).
#   CHAOS_CTL      the chaos-ctl binary (default: chaos-ctl on PATH, else target/release/chaos-ctl).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ctl=${CHAOS_CTL:-$(command -v chaos-ctl || echo "$here/target/release/chaos-ctl")}
daemon_args=()
if [[ -n ${CHAOS_DAEMONS:-} ]]; then
  daemon_args=(--daemons "$CHAOS_DAEMONS")
elif [[ -n ${CHAOS_DAEMON:-} ]]; then
  daemon_args=(--daemon "$CHAOS_DAEMON")
fi

usage() {
  echo "usage: $0 {experiment TYPE [flags]|apply -f FILE|validate -f FILE|status|stop ID|emergency-stop [--clear]|report [ID|--last 24h]|capabilities}" >&2
  exit 2
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift
case $cmd in
  experiment)
    [[ $# -ge 1 ]] || usage
    kind=$1
    shift
    read -r -a target_args <<<"${CHAOS_TARGET:-}"
    exec "$ctl" --daemon "${CHAOS_DAEMON:-unix:///run/chaos/daemon.sock}" experiment "$kind" "${target_args[@]}" "$@"
    ;;
  apply | validate | stop)
    exec "$ctl" --daemon "${CHAOS_DAEMON:-unix:///run/chaos/daemon.sock}" "$cmd" "$@"
    ;;
  status | emergency-stop | report | capabilities)
    exec "$ctl" "${daemon_args[@]}" "$cmd" "$@"
    ;;
  *) usage ;;
esac
