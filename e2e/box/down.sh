#!/usr/bin/env bash
# Stops exactly what up.sh started and removes the state dir: the recorded
# daemons (by PID, after checking each still runs the recorded binary for this
# box), the node's leftovers (containerd shims and pods' processes, found via
# /proc by namespace or cgroup), the pods' cgroups, the nodes' network
# namespaces (with every veth and tap in them), the host's bridges and veth ends
# and the mount points up created. Idempotent: succeeds when nothing is running, after a crashed up,
# or when there is no state.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$BOX_SCRIPTS/box-net.sh"
source "$BOX_SCRIPTS/node.sh"
# The external network (optional part of the box: external.sh).
[[ -f "$BOX_SCRIPTS/external.sh" ]] && source "$BOX_SCRIPTS/external.sh"
GRACE_S=10

box_lock
[[ -d "$BOX" ]] || exit 0
nodes_recorded

# stop NAME...: SIGTERM, up to GRACE_S, SIGKILL; only daemons of this box.
stop() {
  local n pid
  declare -A running=()   # name -> pid
  for n in "$@"; do
    if pid=$(daemon_pid "$n"); then
      running[$n]=$pid
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  local deadline=$((SECONDS + GRACE_S))
  while ((${#running[@]})); do
    for n in "${!running[@]}"; do
      daemon_pid "$n" >/dev/null || unset "running[$n]"
    done
    ((${#running[@]})) || break
    if ((SECONDS >= deadline)); then
      for n in "${!running[@]}"; do
        log "$n (pid ${running[$n]}) did not stop in ${GRACE_S}s; killing it"
        if pid=$(daemon_pid "$n"); then kill -KILL "$pid" 2>/dev/null || true; fi
      done
      sleep 0.2
      for n in "${!running[@]}"; do
        daemon_pid "$n" >/dev/null && die "$n (pid ${running[$n]}) survived SIGKILL"
      done
      break
    fi
    sleep 0.1
  done
}

# Newest first: the reverse of start order, then any PID file not in the order list.
names=()
if [[ -f "$BOX/pids/order" ]]; then
  mapfile -t names < <(tac "$BOX/pids/order")
fi
for f in "$BOX"/pids/*.pid; do
  [[ -f "$f" ]] || continue
  n=$(basename "$f" .pid)
  [[ " ${names[*]} " == *" $n "* ]] || names+=("$n")
done

# A failed node (node-ctl.sh) goes on first: a frozen daemon would not
# handle SIGTERM.
if [[ -s "$BOX/failed-nodes" ]]; then
  while read -r n; do "$BOX_SCRIPTS/node-ctl.sh" recover "$n" || true; done < <(sort -u "$BOX/failed-nodes")
fi

# The nodes first: kubelet (no restarts), containerd, then what they leave
# behind (shims, pods), then everything else in reverse start order.
for i in $(node_indexes); do
  use_node "$i"
  holder=$(holder_pid 2>/dev/null || true)
  stop "kubelet$NODE_SUFFIX"
  stop "containerd$NODE_SUFFIX"
  node_kill_rest "$holder"
done
# One at a time: the apiserver stops in ~1 s once its clients are gone, but
# takes over 10 s while they are still connected.
for n in "${names[@]}"; do stop "$n"; done
node_cgroups_down
if declare -F external_down >/dev/null; then external_down; fi
net_down
node_dirs_down

rm -rf "$BOX"
log "box in $BOX is down"
