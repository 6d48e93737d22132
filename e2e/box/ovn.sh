# OVN for the box (sourced by up.sh; needs lib.sh).
# Central (host namespace): NB and SB as RAFT clusters of OVN_RAFT_MEMBERS
# ovsdb-servers each (box.env), on unix sockets in $BOX/ovn; ovn-northd. Per node (in its namespaces): the Open_vSwitch ovsdb-server
# (OVS_DIR/db.sock, /var/run/openvswitch/db.sock inside the node),
# ovs-vswitchd with the userspace (netdev) datapath, ovn-controller.
# shellcheck shell=bash

# Per node (use_node in lib.sh): OVS_DIR (conf.db, db.sock, ctl sockets),
# OVN_NODE_DIR (ovn-controller's rundir).
OVN_DIR="$BOX/ovn"          # central: dbs, sockets, ctl sockets

# Private run/log/db dirs for every OVS/OVN tool and daemon of this box.
ovs_env() {
  # OVS_DIR is the chosen node's (use_node in lib.sh).
  # shellcheck disable=SC2153
  export OVS_RUNDIR="$OVS_DIR" OVS_LOGDIR="$BOX/logs" OVS_DBDIR="$OVS_DIR" OVS_SYSCONFDIR="$OVS_DIR"
  export OVN_RUNDIR="$OVN_DIR" OVN_LOGDIR="$BOX/logs" OVN_DBDIR="$OVN_DIR" OVN_SYSCONFDIR="$OVN_DIR"
}

vsctl() { ovs-vsctl --db="unix:$OVS_SOCK" --timeout=10 "$@"; }

# db_server NAME DB SOCK [WRAPPER...]: an ovsdb-server in the foreground.
db_server() {
  local name=$1 db=$2 sock=$3
  shift 3
  start_daemon "$name" /usr/sbin/ovsdb-server --wrap "$@" -- \
    "$db" --remote="punix:$sock" --unixctl="${sock%.sock}.ctl" \
    --log-file="$BOX/logs/$name.ovs.log" -vconsole:off -vfile:info
}

# central_sock nb|sb I: member I's client socket (member 1 keeps the name of a
# standalone server, so one-remote clients still work).
central_sock() {
  if (($2 == 1)); then echo "$OVN_DIR/ovn${1}_db.sock"; else echo "$OVN_DIR/ovn${1}_db-$2.sock"; fi
}

# central_remotes nb|sb: every member, as OVN clients take them.
central_remotes() {
  local i out=()
  for ((i = 1; i <= OVN_RAFT_MEMBERS; i++)); do out+=("unix:$(central_sock "$1" "$i")"); done
  local IFS=,
  echo "${out[*]}"
}

# raft_settled nb|sb DBNAME: one member leads and every member has joined.
raft_settled() {
  local i role leaders=0
  for ((i = 1; i <= OVN_RAFT_MEMBERS; i++)); do
    role=$(ovs-appctl -t "$(central_sock "$1" "$i" | sed 's/\.sock$/.ctl/')" cluster/status "$2" 2>/dev/null |
      sed -n 's/^Role: //p')
    case "$role" in
      leader) leaders=$((leaders + 1)) ;;
      follower) ;;
      *) return 1 ;;
    esac
  done
  ((leaders == 1))
}

# central_cluster_up nb|sb: OVN_RAFT_MEMBERS ovsdb-servers of one clustered
# database, created, joined and settled on a leader.
central_cluster_up() {
  local db=$1 schema name base i file
  if [[ $db == nb ]]; then
    schema=/usr/share/ovn/ovn-nb.ovsschema name=OVN_Northbound base=$OVN_NB_RAFT_PORT_BASE
  else
    schema=/usr/share/ovn/ovn-sb.ovsschema name=OVN_Southbound base=$OVN_SB_RAFT_PORT_BASE
  fi
  for ((i = 1; i <= OVN_RAFT_MEMBERS; i++)); do
    port_free $((base + i)) || die "port $((base + i)) (RAFT of $name) is taken"
    file="$OVN_DIR/ovn${db}_db-$i.db"
    if ((i == 1)); then
      ovsdb-tool create-cluster "$file" "$schema" "tcp:127.0.0.1:$((base + 1))"
    else
      ovsdb-tool join-cluster "$file" "$name" "tcp:127.0.0.1:$((base + i))" "tcp:127.0.0.1:$((base + 1))"
    fi
  done
  for ((i = 1; i <= OVN_RAFT_MEMBERS; i++)); do
    db_server "ovn-$db-$i" "$OVN_DIR/ovn${db}_db-$i.db" "$(central_sock "$db" "$i")"
  done
  wait_for "the $name RAFT cluster to elect a leader and join every member" 30 "ovn-$db-1" \
    raft_settled "$db" "$name"
}

ovn_central_up() {
  ovs_env
  mkdir -p "$OVN_DIR"
  central_cluster_up nb
  central_cluster_up sb
  start_daemon ovn-northd /usr/bin/ovn-northd \
    --ovnnb-db="$(central_remotes nb)" --ovnsb-db="$(central_remotes sb)" --unixctl="$OVN_DIR/ovn-northd.ctl" \
    --log-file="$BOX/logs/ovn-northd.ovs.log" -vconsole:off -vfile:info
}

# ovs_node_up: the chosen node's OVS and ovn-controller; needs its holder
# (node.sh) for the namespaces.
ovs_node_up() {
  ovs_env
  mkdir -p "$OVS_DIR" "$OVN_NODE_DIR"
  ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  db_server "ovsdb-server$NODE_SUFFIX" "$OVS_DIR/conf.db" "$OVS_SOCK" node
  wait_for "Open_vSwitch db socket of $NODE_NAME" 10 "ovsdb-server$NODE_SUFFIX" test -S "$OVS_SOCK"
  # Everything ovs-vswitchd reads at start (TSO) and what ovn-controller needs.
  # The underlay bridge br-ul holds the encap IP: the userspace datapath
  # routes tunnel packets (ovs/route, learnt from the node's kernel routes)
  # out of the OVS bridge that has the route, so the address must be on one.
  vsctl --no-wait -- init -- set Open_vSwitch . \
    other_config:userspace-tso-enable=true \
    external_ids:system-id="$NODE_NAME" external_ids:hostname="$NODE_NAME" \
    external_ids:ovn-remote="$(central_remotes sb)" external_ids:ovn-encap-type=geneve \
    external_ids:ovn-encap-ip="$UNDERLAY_IP" external_ids:ovn-bridge-datapath-type=netdev \
    -- add-br br-int -- set bridge br-int datapath_type=netdev fail-mode=secure \
    other-config:disable-in-band=true \
    -- add-br br-ul -- set bridge br-ul datapath_type=netdev \
    -- add-port br-ul "$UNDERLAY_IF"
  start_daemon "ovs-vswitchd$NODE_SUFFIX" /usr/sbin/ovs-vswitchd --wrap node -- \
    "unix:$OVS_SOCK" --unixctl="$OVS_DIR/ovs-vswitchd.ctl" \
    --log-file="$BOX/logs/ovs-vswitchd$NODE_SUFFIX.ovs.log" -vconsole:off -vfile:info
  wait_for "br-int in ovs-vswitchd of $NODE_NAME" 20 "ovs-vswitchd$NODE_SUFFIX" node_exec ip link show br-int
  wait_for "br-ul in ovs-vswitchd of $NODE_NAME" 20 "ovs-vswitchd$NODE_SUFFIX" node_exec ip link show br-ul
  node_exec ip addr add "$UNDERLAY_IP/$UNDERLAY_PREFIX" dev br-ul
  node_exec ip link set br-ul up
  OVN_RUNDIR="$OVN_NODE_DIR" start_daemon "ovn-controller$NODE_SUFFIX" /usr/bin/ovn-controller --wrap node -- \
    "unix:$OVS_SOCK" --log-file="$BOX/logs/ovn-controller$NODE_SUFFIX.ovs.log" -vconsole:off -vfile:info
  wait_for "chassis $NODE_NAME in the SB" 20 "ovn-controller$NODE_SUFFIX" \
    bash -c "[[ -n \"\$(ovn-sbctl --db=$(central_remotes sb) --timeout=5 --bare --columns=name find Chassis name=$NODE_NAME)\" ]]"
}

# central_leader nb|sb: the index of the member that leads (none: fails).
central_leader() {
  local name=OVN_Northbound i
  [[ $1 == sb ]] && name=OVN_Southbound
  for ((i = 1; i <= OVN_RAFT_MEMBERS; i++)); do
    if ovs-appctl -t "$(central_sock "$1" "$i" | sed 's/\.sock$/.ctl/')" cluster/status "$name" 2>/dev/null |
      grep -x "Role: leader" >/dev/null; then
      echo "$i"
      return 0
    fi
  done
  return 1
}

# Standalone against a running box, for tests that take a member down:
#   ovn.sh leader nb|sb        the leading member's index
#   ovn.sh member-up nb|sb I   starts member I again (after it was killed) and
#                              waits until it has rejoined
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  OVN_DIR="$BOX/ovn"
  [[ -d "$OVN_DIR" ]] || die "no OVN central in $BOX"
  ovs_env
  case "${1:-}:${2:-}" in
    leader:nb | leader:sb) central_leader "$2" ;;
    member-up:nb | member-up:sb)
      if ! [[ "${3:-}" =~ ^[1-9]$ ]] || (($3 > OVN_RAFT_MEMBERS)); then
        die "member-up: a member index 1..$OVN_RAFT_MEMBERS"
      fi
      daemon_pid "ovn-$2-$3" >/dev/null && die "member $3 of $2 still runs"
      rm -f "$BOX/pids/ovn-$2-$3.pid" "$BOX/pids/ovn-$2-$3.exe"
      grep -vxF "ovn-$2-$3" "$BOX/pids/order" >"$BOX/pids/order.tmp" || true
      mv -f "$BOX/pids/order.tmp" "$BOX/pids/order"
      db_server "ovn-$2-$3" "$OVN_DIR/ovn${2}_db-$3.db" "$(central_sock "$2" "$3")"
      name=OVN_Northbound
      [[ $2 == sb ]] && name=OVN_Southbound
      wait_for "member $3 of $name to rejoin" 30 "ovn-$2-$3" raft_settled "$2" "$name"
      log "member $3 of $name is back in its cluster"
      ;;
    *) echo "usage: $0 leader nb|sb | member-up nb|sb I" >&2; exit 2 ;;
  esac
fi
