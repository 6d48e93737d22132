# Shared settings and helpers for the cluster-in-a-box scripts (sourced, not run).
# shellcheck shell=bash

BOX_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BOX_SCRIPTS/../.." && pwd)"
# The constants (ports, addresses, names) the Rust tests read too.
# shellcheck source=box.env
source "$BOX_SCRIPTS/box.env"
BOX="${VPCNET_BOX_DIR:-$BOX_DIR_DEFAULT}"
K8S_VERSION="${K8S_VERSION:-$K8S_VERSION_DEFAULT}"
# shellcheck disable=SC2034 # used by the scripts that source this file
K8S_BIN="${VPCNET_CACHE:-$HOME/.cache/vpcnet}/k8s-${K8S_VERSION}/bin"
# Where the binaries come from (cargo output): the components' images and the
# external host's server. BOX_PROFILE is the cargo profile directory under
# BOX_TARGET: `release` for the demo; the test suite passes `debug` to reuse
# the build it has just made instead of compiling everything twice (the
# images then get the binaries without their debug info).
# shellcheck disable=SC2034 # used by the scripts that source this file
BOX_TARGET="${VPCNET_BOX_TARGET:-$REPO/target-box}"
# shellcheck disable=SC2034 # used by the scripts that source this file
BOX_PROFILE="${VPCNET_BOX_PROFILE:-release}"
if [[ -n "${VPCNET_BOX_NO_NODE:-}" ]]; then
  ADVERTISE_IP="${VPCNET_BOX_ADVERTISE_IP:-127.0.0.1}"
else
  ADVERTISE_IP="${VPCNET_BOX_ADVERTISE_IP:-$HOST_IP}"
fi
API_SERVER="https://$ADVERTISE_IP:$APISERVER_PORT"
# How many nodes (box.env: NODES_DEFAULT, NODES_MAX). A running box records
# its count in $BOX/nodes: down.sh and env.sh read that (nodes_recorded).
NODES="${VPCNET_BOX_NODES:-$NODES_DEFAULT}"
if ! [[ "$NODES" =~ ^[1-9]$ ]] || ((NODES > NODES_MAX)); then
  echo "box: VPCNET_BOX_NODES=$NODES: 1 to $NODES_MAX nodes" >&2
  exit 2
fi
nodes_recorded() { [[ ! -f "$BOX/nodes" ]] || NODES=$(<"$BOX/nodes"); }

# use_node I: points the per-node settings at node I (1-based): its name,
# namespaces, addresses, state dirs and daemon names. Every per-node function
# works on the node last chosen; the box starts as node 1.
# shellcheck disable=SC2034 # read by the scripts that source this file
use_node() {
  NODE_INDEX=$1
  NODE_NAME="$NODE_NAME_PREFIX-$1"
  NODE_NETNS="$NODE_NETNS_PREFIX-$1"
  NODE_IP="$NODE_NET_BASE.$((1 + $1))"
  HOST_VETH="$HOST_VETH_PREFIX-n$1"
  HOST_UNDERLAY_VETH="$HOST_VETH_PREFIX-u$1"
  UNDERLAY_IP="$UNDERLAY_BASE.$1"
  EXT_NODE_IP="$EXT_NODE_IP_BASE.$((90 + $1))"
  NODE_DIR="$BOX/nodes.d/$NODE_NAME"
  OVS_DIR="$NODE_DIR/ovs"
  OVS_SOCK="$OVS_DIR/db.sock"
  OVN_NODE_DIR="$NODE_DIR/ovn-node"
  NODE_SUFFIX="@$NODE_NAME"
}
use_node 1

# node_indexes: 1 .. NODES, one per line.
node_indexes() { seq 1 "$NODES"; }
PKI="$BOX/pki"

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
holder_pid() { daemon_pid "node-holder$NODE_SUFFIX"; }

# node_exec CMD...: runs CMD in the node's network + mount namespaces.
node_exec() {
  local pid
  pid=$(holder_pid) || die "the node's namespace holder is not running"
  nsenter -t "$pid" -m -n -- "$@"
}

# record_created_dir DIR: mkdir -p DIR, remembering each directory it created on
# the host (down.sh removes them again, deepest first, only if still empty).
record_created_dir() {
  local dir=$1 missing=()
  while [[ ! -e "$dir" ]]; do
    missing=("$dir" "${missing[@]}")
    dir=$(dirname "$dir")
  done
  ((${#missing[@]})) || return 0
  mkdir -p "${missing[-1]}"
  printf '%s\n' "${missing[@]}" >>"$BOX/created-dirs"
}

# ---------------------------------------------------------------- daemons

# start_daemon NAME EXE [--wrap node|netns|bind SRC:DST --] ARGS...: runs EXE
# in its own session, detached from this shell, logging to $BOX/logs/NAME.log;
# records its PID and binary for down.sh. With --wrap node it runs inside the
# node's network and mount namespaces, with --wrap netns in a new private mount
# namespace in the node's network namespace (the holder), with --wrap bind
# SRC:DST in a new private mount namespace of the host where directory SRC is
# bind-mounted over DST (configuration of its own, the host's left alone);
# nsenter/unshare/bash exec EXE, so the recorded PID is EXE's.
start_daemon() {
  local name=$1 exe wrap=()
  exe=$(readlink -f "$2")
  shift 2
  if [[ "${1:-}" == --wrap ]]; then
    case "$2" in
      node) wrap=(nsenter -t "$(holder_pid)" -m -n --) ;;
      netns) wrap=(nsenter "--net=/run/netns/$NODE_NETNS" -- unshare -m --propagation private --) ;;
      bind)
        # shellcheck disable=SC2016 # expanded by the inner bash
        wrap=(unshare -m --propagation private -- bash -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' bind "${3%%:*}" "${3#*:}")
        shift
        ;;
      --) ;;
      *) die "start_daemon: unknown wrap $2" ;;
    esac
    if [[ "$2" == -- ]]; then shift 2; else shift 3; fi
  fi
  # fd 8 is the box lock: a daemon must not hold it.
  setsid "${wrap[@]}" "$exe" "$@" </dev/null >"$BOX/logs/$name.log" 2>&1 8>&- &
  local pid=$!
  echo "$pid" >"$BOX/pids/$name.pid"
  echo "$exe" >"$BOX/pids/$name.exe"
  echo "$name" >>"$BOX/pids/order"
  local i
  for ((i = 0; i < 100; i++)); do
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]] && return 0
    proc_alive "$pid" || break
    sleep 0.02
  done
  die "$name did not start (see $BOX/logs/$name.log)"
}

# daemon_down NAME: stops one daemon by its recorded PID (TERM, KILL after
# 5 s) and forgets it; down.sh stops the rest.
daemon_down() {
  local name=$1 pid i
  if pid=$(daemon_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      proc_alive "$pid" || break
      sleep 0.1
    done
    if proc_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$BOX/pids/$name.pid" "$BOX/pids/$name.exe"
  if [[ -f "$BOX/pids/order" ]]; then
    grep -vxF "$name" "$BOX/pids/order" >"$BOX/pids/order.tmp" || true
    mv -f "$BOX/pids/order.tmp" "$BOX/pids/order"
  fi
}

# wait_for WHAT TIMEOUT_S DAEMON CMD...: polls CMD every 0.1 s; fails early if
# DAEMON exited.
wait_for() {
  local what=$1 timeout=$2 daemon=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$daemon" ]] && ! daemon_pid "$daemon" >/dev/null; then
      die "$daemon exited while waiting for $what (see $BOX/logs/$daemon.log)"
    fi
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
    sleep 0.1
  done
}

# api PATH: GET against the apiserver as the admin.
api() {
  curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$API_SERVER$1"
}

# port_free PORT: nothing listens on TCP PORT on any address.
port_free() { [[ -z "$(ss -Hltn "sport = :$1")" ]]; }

# ---------------------------------------------------------------- certificates

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# new_ca NAME CN: self-signed CA key + certificate.
new_ca() {
  new_key "$PKI/$1.key"
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$PKI/$1.crt" 2>/dev/null
}

# sign NAME SUBJECT EXTENSIONS [CA]: key + certificate signed by CA (default: ca).
sign() {
  local name=$1 subj=$2 ext=$3 ca=${4:-ca}
  new_key "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" 2>/dev/null |
    openssl x509 -req -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -set_serial "0x$(openssl rand -hex 12)" \
      -days 3650 -extfile <(printf '%b' "$ext") -out "$PKI/$name.crt" 2>/dev/null
}

# write_kubeconfig FILE USER: kubeconfig for USER's client cert, certs embedded.
write_kubeconfig() {
  local file=$1 user=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vpcnet-box
  cluster:
    server: $API_SERVER
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$user.crt")
    client-key-data: $(base64 -w0 "$PKI/$user.key")
contexts:
- name: vpcnet-box
  context: {cluster: vpcnet-box, user: $user}
current-context: vpcnet-box
EOF
}
