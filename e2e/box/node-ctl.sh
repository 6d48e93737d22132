#!/usr/bin/env bash
# A node of a running box dies and comes back, the way nodes do (not a
# clean drain):
#
#   node-ctl.sh fail node-<i>     freezes the node's kubelet, containerd and
#                                 OVS/OVN daemons (SIGSTOP: they neither work
#                                 nor report, as on a hung or powered-off
#                                 machine) and cuts its links: to the host
#                                 (API, other nodes), the tunnel underlay and
#                                 the external network. Its pods' processes
#                                 go on running, cut off, as they would on
#                                 a partitioned node.
#   node-ctl.sh recover node-<i>  links up again, then the daemons go on
#                                 (SIGCONT) where they stopped.
#   node-ctl.sh status            which nodes are failed.
#
# Only daemons this box started, by their recorded PIDs. down.sh recovers a
# failed node before it stops it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The node's daemons, in the order they are frozen (kubelet first, so it
# reports nothing of what follows) and the reverse order they go on.
NODE_DAEMONS=(kubelet containerd ovn-controller ovs-vswitchd ovsdb-server)

# node_links_set up|down: the chosen node's links, from the host's and the
# external host's side (a cable pulled at the switch).
node_links_set() {
  ip link set "$HOST_VETH" "$1"
  ip link set "$HOST_UNDERLAY_VETH" "$1"
  ip -n "$EXT_NETNS" link set "n$NODE_INDEX" "$1"
}

node_signal() {
  local sig=$1 d pid
  shift
  for d in "$@"; do
    pid=$(daemon_pid "$d$NODE_SUFFIX") || die "$d$NODE_SUFFIX is not running"
    kill "-$sig" "$pid"
  done
}

main() {
  nodes_recorded
  [[ -f "$BOX/nodes" ]] || die "no box with nodes in $BOX"
  case "${1:-}" in
    status)
      cat "$BOX/failed-nodes" 2>/dev/null || true
      return 0
      ;;
    fail | recover) ;;
    *)
      echo "usage: $0 fail|recover node-<i> | status" >&2
      exit 2
      ;;
  esac
  local node=${2:-} i
  i=${node#"$NODE_NAME_PREFIX"-}
  if ! [[ "$i" =~ ^[1-9]$ ]] || ((i > NODES)); then
    die "no node $node in this box of $NODES nodes"
  fi
  use_node "$i"
  local failed=0
  grep -qxF "$NODE_NAME" "$BOX/failed-nodes" 2>/dev/null && failed=1
  if [[ $1 == fail ]]; then
    ((failed == 0)) || die "$NODE_NAME is failed already"
    node_signal STOP "${NODE_DAEMONS[@]}"
    node_links_set down
    echo "$NODE_NAME" >>"$BOX/failed-nodes"
    log "$NODE_NAME failed: daemons frozen, links cut"
  else
    ((failed == 1)) || die "$NODE_NAME is not failed"
    node_links_set up
    local rev=() d
    for d in "${NODE_DAEMONS[@]}"; do rev=("$d" "${rev[@]}"); done
    node_signal CONT "${rev[@]}"
    grep -vxF "$NODE_NAME" "$BOX/failed-nodes" >"$BOX/failed-nodes.tmp" || true
    mv -f "$BOX/failed-nodes.tmp" "$BOX/failed-nodes"
    log "$NODE_NAME recovered: links up, daemons going on"
  fi
}

main "$@"
