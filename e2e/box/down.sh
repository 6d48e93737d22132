#!/usr/bin/env bash
# Stops exactly the daemons up.sh started (by their recorded PIDs, after checking
# each PID still runs the recorded binary for this box) and removes the state dir.
# Idempotent: succeeds when nothing is running or there is no state.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GRACE_S=10

box_lock
[[ -d "$BOX" ]] || exit 0

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

declare -A running=()   # name -> pid
for n in "${names[@]}"; do
  if pid=$(daemon_pid "$n"); then
    running[$n]=$pid
    kill -TERM "$pid" 2>/dev/null || true
  fi
done

deadline=$((SECONDS + GRACE_S))
while ((${#running[@]})); do
  for n in "${!running[@]}"; do
    daemon_pid "$n" >/dev/null || unset "running[$n]"
  done
  ((${#running[@]})) || break
  if ((SECONDS >= deadline)); then
    for n in "${!running[@]}"; do
      log "$n (pid ${running[$n]}) did not stop in ${GRACE_S}s; killing it"
      pid=$(daemon_pid "$n") && kill -KILL "$pid" 2>/dev/null || true
    done
    sleep 0.2
    for n in "${!running[@]}"; do
      daemon_pid "$n" >/dev/null && die "$n (pid ${running[$n]}) survived SIGKILL"
    done
    break
  fi
  sleep 0.1
done

rm -rf "$BOX"
log "box in $BOX is down"
