# Shared settings and helpers for the cluster-in-a-box scripts (sourced, not run).
# shellcheck shell=bash

BOX_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BOX_SCRIPTS/../.." && pwd)"
BOX="${VPCNET_BOX_DIR:-/tmp/vpcnet-box}"
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
K8S_BIN="${VPCNET_CACHE:-$HOME/.cache/vpcnet}/k8s-${K8S_VERSION}/bin"

# Loopback only, and away from the default ports so a box can sit next to a
# real cluster on the same machine.
ETCD_CLIENT_PORT=32379
ETCD_PEER_PORT=32380
APISERVER_PORT=36443
CONTROLLER_MANAGER_PORT=36257
SCHEDULER_PORT=36259
SERVICE_CIDR=10.96.0.0/16
SERVICE_API_IP=10.96.0.1
# The node: a network namespace joined to the host by a veth pair. The host end
# carries HOST_IP, where the apiserver binds and which it advertises (the API
# refuses loopback Endpoints, so the "kubernetes" Service needs this address).
NODE_NETNS=vpcnet-node
NODE_NAME=node-1
HOST_VETH=vpcbox0
NODE_VETH=eth0
HOST_IP=10.255.0.1
NODE_IP=10.255.0.2
NET_PREFIX=30
if [[ -n "${VPCNET_BOX_NO_NODE:-}" ]]; then
  ADVERTISE_IP="${VPCNET_BOX_ADVERTISE_IP:-127.0.0.1}"
else
  ADVERTISE_IP="${VPCNET_BOX_ADVERTISE_IP:-$HOST_IP}"
fi
API_SERVER="https://$ADVERTISE_IP:$APISERVER_PORT"
CLUSTER_DNS_DOMAIN=cluster.local
# Inside the node's mount namespace.
CONTAINERD_SOCK=/run/containerd/containerd.sock

log() { echo "box: $*" >&2; }
# die also leaves its reason in the state dir, so up's exit handler can repeat
# it after the log tails even when die ran in a subshell ($(...), <(...)).
die() {
  log "$*"
  [[ -d "$BOX" ]] && echo "$*" >>"$BOX/failure" 2>/dev/null
  exit 1
}

# netns_exists NAME: a network namespace NAME exists (grep reads to the end:
# see image_imported in config.sh on grep -q under pipefail).
netns_exists() { ip netns list | awk '{print $1}' | grep -xF -- "$1" >/dev/null; }

# Serialises up/down for one state dir. The lock file lives beside the state dir
# because down removes the dir itself. Nested calls (up -> down) inherit it.
box_lock() {
  [[ -n "${VPCNET_BOX_LOCKED:-}" ]] && return 0
  mkdir -p "$(dirname "$BOX")"
  exec 8>"$BOX.lock"
  flock -w 120 8 || die "another up/down of $BOX still holds $BOX.lock after 120s"
  export VPCNET_BOX_LOCKED=1
}

# proc_alive PID: the process exists and is not a zombie (daemons reparented to
# an init that does not reap them stay as zombies after they exit).
proc_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# proc_is PID EXE: PID is alive, runs EXE, and was started for this box (its
# command line names the state dir). Guards against PID reuse.
proc_is() {
  local pid=$1 exe=$2 actual
  proc_alive "$pid" || return 1
  actual=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  actual=${actual% (deleted)}
  [[ "$actual" == "$exe" ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -F -- "$BOX/" >/dev/null
}

# daemon_pid NAME: prints the PID of a running daemon of this box, or fails.
daemon_pid() {
  local name=$1 pid exe
  [[ -f "$BOX/pids/$name.pid" && -f "$BOX/pids/$name.exe" ]] || return 1
  pid=$(<"$BOX/pids/$name.pid")
  exe=$(<"$BOX/pids/$name.exe")
  proc_is "$pid" "$exe" && echo "$pid"
}

# rss_kb PID: resident set size in kB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# holder_pid: PID of the process that holds the node's mount namespace.
holder_pid() { daemon_pid node-holder; }

# node_exec CMD...: runs CMD in the node's network + mount namespaces.
node_exec() {
  local pid
  pid=$(holder_pid) || die "the node's namespace holder is not running"
  nsenter -t "$pid" -m -n -- "$@"
}
