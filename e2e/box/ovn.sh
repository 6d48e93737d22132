# OVN for the box (sourced by up.sh; needs lib.sh).
# Central (host namespace): NB + SB ovsdb-servers on unix sockets in $BOX/ovn,
# ovn-northd. Node (vpcnet-node namespaces): the Open_vSwitch ovsdb-server
# ($BOX/ovs/db.sock, /var/run/openvswitch/db.sock inside the node),
# ovs-vswitchd with the userspace (netdev) datapath, ovn-controller.
# shellcheck shell=bash

OVN_DIR="$BOX/ovn"          # central: dbs, sockets, ctl sockets
OVS_DIR="$BOX/ovs"          # node: conf.db, db.sock, ctl sockets
OVN_NODE_DIR="$BOX/ovn-node"  # node: ovn-controller's rundir
NB_SOCK="$OVN_DIR/ovnnb_db.sock"
SB_SOCK="$OVN_DIR/ovnsb_db.sock"
OVS_SOCK="$OVS_DIR/db.sock"

# Private run/log/db dirs for every OVS/OVN tool and daemon of this box.
ovs_env() {
  export OVS_RUNDIR="$OVS_DIR" OVS_LOGDIR="$BOX/logs" OVS_DBDIR="$OVS_DIR" OVS_SYSCONFDIR="$OVS_DIR"
  export OVN_RUNDIR="$OVN_DIR" OVN_LOGDIR="$BOX/logs" OVN_DBDIR="$OVN_DIR" OVN_SYSCONFDIR="$OVN_DIR"
}

vsctl() { ovs-vsctl --db="unix:$OVS_SOCK" --timeout=10 "$@"; }
sbctl() { ovn-sbctl --db="unix:$SB_SOCK" --timeout=10 "$@"; }

# db_server NAME DB SOCK [WRAPPER...]: an ovsdb-server in the foreground.
db_server() {
  local name=$1 db=$2 sock=$3
  shift 3
  start_daemon "$name" /usr/sbin/ovsdb-server --wrap "$@" -- \
    "$db" --remote="punix:$sock" --unixctl="${sock%.sock}.ctl" \
    --log-file="$BOX/logs/$name.ovs.log" -vconsole:off -vfile:info
}

ovn_central_up() {
  ovs_env
  mkdir -p "$OVN_DIR"
  ovsdb-tool create "$OVN_DIR/ovnnb_db.db" /usr/share/ovn/ovn-nb.ovsschema
  ovsdb-tool create "$OVN_DIR/ovnsb_db.db" /usr/share/ovn/ovn-sb.ovsschema
  db_server ovn-nb "$OVN_DIR/ovnnb_db.db" "$NB_SOCK"
  db_server ovn-sb "$OVN_DIR/ovnsb_db.db" "$SB_SOCK"
  wait_for "OVN NB socket" 10 ovn-nb test -S "$NB_SOCK"
  wait_for "OVN SB socket" 10 ovn-sb test -S "$SB_SOCK"
  start_daemon ovn-northd /usr/bin/ovn-northd \
    --ovnnb-db="unix:$NB_SOCK" --ovnsb-db="unix:$SB_SOCK" --unixctl="$OVN_DIR/ovn-northd.ctl" \
    --log-file="$BOX/logs/ovn-northd.ovs.log" -vconsole:off -vfile:info
}

# ovs_node_up: needs the node's holder (node.sh) for the namespaces.
ovs_node_up() {
  ovs_env
  mkdir -p "$OVS_DIR" "$OVN_NODE_DIR"
  ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  db_server ovsdb-server "$OVS_DIR/conf.db" "$OVS_SOCK" node
  wait_for "Open_vSwitch db socket" 10 ovsdb-server test -S "$OVS_SOCK"
  # Everything ovs-vswitchd reads at start (TSO) and what ovn-controller needs.
  vsctl --no-wait -- init -- set Open_vSwitch . \
    other_config:userspace-tso-enable=true \
    external_ids:system-id="$NODE_NAME" external_ids:hostname="$NODE_NAME" \
    external_ids:ovn-remote="unix:$SB_SOCK" external_ids:ovn-encap-type=geneve \
    external_ids:ovn-encap-ip=127.0.0.1 external_ids:ovn-bridge-datapath-type=netdev \
    -- add-br br-int -- set bridge br-int datapath_type=netdev fail-mode=secure \
    other-config:disable-in-band=true
  start_daemon ovs-vswitchd /usr/sbin/ovs-vswitchd --wrap node -- \
    "unix:$OVS_SOCK" --unixctl="$OVS_DIR/ovs-vswitchd.ctl" \
    --log-file="$BOX/logs/ovs-vswitchd.ovs.log" -vconsole:off -vfile:info
  wait_for "br-int in ovs-vswitchd" 20 ovs-vswitchd node_exec ip link show br-int
  OVN_RUNDIR="$OVN_NODE_DIR" start_daemon ovn-controller /usr/bin/ovn-controller --wrap node -- \
    "unix:$OVS_SOCK" --log-file="$BOX/logs/ovn-controller.ovs.log" -vconsole:off -vfile:info
  wait_for "chassis $NODE_NAME in the SB" 20 ovn-controller \
    bash -c "[[ -n \"\$(ovn-sbctl --db=unix:$SB_SOCK --timeout=5 --bare --columns=name find Chassis name=$NODE_NAME)\" ]]"
}
