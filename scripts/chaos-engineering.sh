#!/usr/bin/env bash
# The command names of the original request, on top of chaos-ctl. `--help` prints the usage.
set -euo pipefail

help() {
  cat <<'EOF'
usage: chaos-engineering.sh COMMAND [ARGS]

The command names of the original request, on top of chaos-ctl (see `chaos-ctl COMMAND --help`):

  experiment TYPE [FLAGS]   start an experiment on $CHAOS_TARGET (or on the pods of --pod
                            NS/NAME or --selector K=V -n NS, through Kubernetes, which then
                            replace $CHAOS_TARGET); TYPE is one of packet_loss,
                            dependency_failure, api_error_injection, network_latency,
                            syscall_error, pod_deletion, resource_exhaustion. --intensity (0 to 1)
                            is required for packet_loss, dependency_failure, api_error_injection
                            and syscall_error; network_latency needs --latency-ms.
  apply -f FILE             start the experiment a YAML file defines (chaos/experiments/)
  validate -f FILE          check an experiment file (or --config FILE, a chaos config) offline
  status                    running experiments
  stop ID                   stop one experiment
  emergency-stop [--clear]  disarm every experiment and refuse new ones until --clear
  report [ID | --last 24h]  one experiment's post-mortem, or the experiments of a period
  capabilities              what the node's kernel can inject

Examples:
  ./scripts/chaos-engineering.sh experiment packet_loss --intensity 0.1 --duration 300
  ./scripts/chaos-engineering.sh experiment dependency_failure --intensity 0.25 --budget 50.00
  ./scripts/chaos-engineering.sh status
  ./scripts/chaos-engineering.sh emergency-stop
  ./scripts/chaos-engineering.sh report --last 24h

Kubernetes (one experiment per node, each with that node's pods; the other commands go to
every chaos-daemon pod), with the operator's certificate:
  export CHAOS_CA=ca.pem CHAOS_CERT=operator.pem CHAOS_KEY=operator-key.pem
  CHAOS_KUBE=1 ./scripts/chaos-engineering.sh experiment packet_loss --intensity 0.1 \
    --duration 300 --selector app=web -n shop --max-pods 2
  CHAOS_KUBE=1 ./scripts/chaos-engineering.sh status

Environment:
  CHAOS_TARGET   target flags for `experiment`, e.g. "--cgroup /sys/fs/cgroup/app.slice" or
                 "--pod-uid 8f3c..."; split on whitespace, never evaluated by a shell.
  CHAOS_DAEMON   the daemon (default: chaos-ctl's, unix:///run/chaos/daemon.sock), or
  CHAOS_DAEMONS  a file listing daemons: every command goes to all of them (an experiment
                 starts where its target is).
  CHAOS_KUBE=1   Kubernetes mode (chaos-ctl --kube): the daemons are the chaos-daemon pods, found
                 through $KUBECONFIG, ~/.kube/config or the in-cluster service account;
  CHAOS_KUBECONFIG  the same with this kubeconfig (--kubeconfig);
  CHAOS_PORT_FORWARD=1  reach the daemon pods through port-forwards (--port-forward), from
                 outside the cluster. Not with CHAOS_DAEMON or CHAOS_DAEMONS.
  CHAOS_CA, CHAOS_CERT, CHAOS_KEY  the mutual TLS files (--ca, --cert, --key) for https://
                 daemons and Kubernetes mode (`chaos-ctl certs` writes them).
  CHAOS_CTL      the chaos-ctl binary (default: chaos-ctl on PATH, else target/release/chaos-ctl).

Exit codes are chaos-ctl's: 0 ok, 1 failure, 2 usage error, 3 refused by a daemon.
EOF
}

usage() {
  help >&2
  exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ctl=${CHAOS_CTL:-$(command -v chaos-ctl || echo "$here/target/release/chaos-ctl")}
daemon_args=()
if [[ -n ${CHAOS_DAEMONS:-} ]]; then
  daemon_args=(--daemons "$CHAOS_DAEMONS")
elif [[ -n ${CHAOS_DAEMON:-} ]]; then
  daemon_args=(--daemon "$CHAOS_DAEMON")
fi
kube_args=()
[[ ${CHAOS_KUBE:-} == 1 ]] && kube_args+=(--kube)
[[ -n ${CHAOS_KUBECONFIG:-} ]] && kube_args+=(--kubeconfig "$CHAOS_KUBECONFIG")
[[ ${CHAOS_PORT_FORWARD:-} == 1 ]] && kube_args+=(--port-forward)
if [[ ${#kube_args[@]} -gt 0 && ${#daemon_args[@]} -gt 0 ]]; then
  echo "chaos-engineering.sh: CHAOS_KUBE, CHAOS_KUBECONFIG and CHAOS_PORT_FORWARD find the" \
    "daemons through Kubernetes; unset CHAOS_DAEMON and CHAOS_DAEMONS" >&2
  exit 2
fi
daemon_args+=("${kube_args[@]}")
[[ -n ${CHAOS_CA:-} ]] && daemon_args+=(--ca "$CHAOS_CA")
[[ -n ${CHAOS_CERT:-} ]] && daemon_args+=(--cert "$CHAOS_CERT")
[[ -n ${CHAOS_KEY:-} ]] && daemon_args+=(--key "$CHAOS_KEY")

cmd=${1:-}
[[ -n $cmd ]] || usage
shift
case $cmd in
  -h | --help | help)
    help
    ;;
  experiment)
    [[ $# -ge 1 ]] || usage
    kind=$1
    shift
    read -r -a target_args <<<"${CHAOS_TARGET:-}"
    # Pods given on the command line replace $CHAOS_TARGET.
    for arg in "$@"; do
      case $arg in
        --pod | --pod=* | --selector | --selector=*) target_args=() ;;
      esac
    done
    exec "$ctl" "${daemon_args[@]}" experiment "$kind" "${target_args[@]}" "$@"
    ;;
  apply | validate | status | stop | emergency-stop | report | capabilities)
    exec "$ctl" "${daemon_args[@]}" "$cmd" "$@"
    ;;
  *) usage ;;
esac
