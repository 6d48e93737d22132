#!/usr/bin/env bash
# The box's "external" network (sourced by up.sh/down.sh after lib.sh; or
# standalone against a running box: `external.sh up|down|status`):
#
#   netns vpcnet-node-<i> (every node)      netns vpcnet-ext (the external host)
#   ext0 172.16.3.(90+i)         <-veth->  n<i>, a port of bridge eth0
#   = macvlan master of the NAD             eth0 172.16.3.2/24
#                                           HTTP on :80 and :8080, one line per
#     ovn-vpc-external-network              connection in $BOX/ext/access.log;
#                                           DNS on :53 (dnsmasq: every name
#                                           under $EXT_DNS_DOMAIN is
#                                           172.16.3.2), the upstream of the
#                                           VPCs' DNS servers
#
# (names, addresses and ports: the EXT_* settings of box.env)
#
#   external_up        creates the netns, the veth pair and starts the server
#                      (recorded as daemon `ext-http` in $BOX/pids, so down.sh
#                      stops it with the other daemons)
#   external_down      stops the server (by its recorded PID) and deletes the
#                      netns (the veth pair goes with it); idempotent
#   external_nad_apply applies config/box/external-nad.yaml (needs the NAD CRD
#                      and the vpcnet-system namespace)
#
# The server is vpcnet-external-host (e2e/external-host), a release binary in
# $BOX_TARGET like the components' (cargo xtask box up builds it). It answers
# every connection (HTTP or not) with an HTTP 200 whose body is
# `client=<ip>:<port> server=external`, and appends `client=<ip>:<port>` to
# the access log. It binds its sockets itself: no reverse DNS lookups.
# shellcheck shell=bash

EXT_DAEMON="ext-http"
EXT_DNS_DAEMON="ext-dns"
EXT_SERVER_BIN=vpcnet-external-host

# ext_ports: the external host's ports, one per line.
ext_ports() { tr , '\n' <<<"$EXT_PORTS"; }

# ext_serving: every port answers.
ext_serving() {
  local p
  for p in $(ext_ports); do
    [[ -n "$(ip netns exec "$EXT_NETNS" ss -Hltn "sport = :$p")" ]] || return 1
  done
}

external_up() {
  use_node 1
  [[ -e "/run/netns/$NODE_NETNS" ]] || die "the node's netns $NODE_NETNS does not exist (is the box up?)"
  if daemon_pid "$EXT_DAEMON" >/dev/null; then
    log "external network already up"
    return 0
  fi
  local exe pid i ports
  exe="$BOX_TARGET/$BOX_PROFILE/$EXT_SERVER_BIN"
  [[ -x "$exe" ]] || die "$exe is not built (cargo build --release -p $EXT_SERVER_BIN)"
  exe=$(readlink -f "$exe")
  netns_exists "$EXT_NETNS" && external_down
  mkdir -p "$(dirname "$BOX/$EXT_ACCESS_LOG")" "$BOX/pids" "$BOX/logs"
  ip netns add "$EXT_NETNS"
  ip -n "$EXT_NETNS" link set lo up
  ip -n "$EXT_NETNS" link add "$EXT_HOST_IF" type bridge
  ip -n "$EXT_NETNS" addr add "$EXT_HOST_IP/$EXT_PREFIX" dev "$EXT_HOST_IF"
  ip -n "$EXT_NETNS" link set "$EXT_HOST_IF" up
  # The external host routes (and NATs) between its bridge's ports; it is no
  # filtering bridge. With br_netfilter loaded (its settings are per network
  # namespace), a reply it de-NATs towards the port it came in on would be
  # taken for bridged traffic and dropped as a hairpin: a gateway on node 1,
  # whose replies from the API server come back through node 1's port, could
  # never reach the API.
  if ip netns exec "$EXT_NETNS" test -e /proc/sys/net/bridge/bridge-nf-call-iptables; then
    ip netns exec "$EXT_NETNS" sysctl -qw net.bridge.bridge-nf-call-iptables=0 \
      net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0
  fi
  # A veth hands on packets with checksums still to be filled in; a real
  # wire never does. NAT gateways forward such replies into OVS's userspace
  # datapath, which would pass the unfinished checksum on to pods, so every
  # end computes checksums in software, as a NIC on a wire would.
  ip netns exec "$EXT_NETNS" ethtool -K "$EXT_HOST_IF" tx off >/dev/null
  local n
  for n in $(node_indexes); do
    use_node "$n"
    ip link add "$EXT_NODE_IF" netns "$NODE_NETNS" type veth peer name "n$n" netns "$EXT_NETNS"
    ip -n "$NODE_NETNS" link set "$EXT_NODE_IF" up
    ip -n "$EXT_NETNS" link set "n$n" master "$EXT_HOST_IF" up
    ip netns exec "$EXT_NETNS" ethtool -K "n$n" tx off >/dev/null
    ip netns exec "$NODE_NETNS" ethtool -K "$EXT_NODE_IF" tx off >/dev/null
    # The node's own address there: its pods' host-egress to the external
    # network (the DNS servers' upstream) leaves through it.
    ip -n "$NODE_NETNS" addr add "$EXT_NODE_IP/$EXT_PREFIX" dev "$EXT_NODE_IF"
  done
  use_node 1
  # As on a real cluster's physical network, the control plane is reachable
  # from the external network: NAT gateway agents talk to the API server
  # through their external leg. The external host routes the box's network
  # via node 1, which forwards to the API server and masquerades, so the
  # host itself needs no route back.
  ip netns exec "$NODE_NETNS" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$NODE_NETNS" iptables -t nat -A POSTROUTING -s "$EXT_NET" -d "$HOST_IP/32" \
    -m comment --comment "vpcnet-box: external network to the API server" -j MASQUERADE
  ip netns exec "$EXT_NETNS" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$EXT_NETNS" route add "$HOST_IP/32" via "$EXT_NODE_IP"
  # Replies then come back to the external host, which alone can reach the
  # gateways' macvlan legs (a macvlan child and its lower device on the node
  # cannot talk to each other directly).
  ip netns exec "$EXT_NETNS" iptables -t nat -A POSTROUTING -d "$HOST_IP/32" -j MASQUERADE
  mapfile -t ports < <(ext_ports)
  : >>"$BOX/$EXT_ACCESS_LOG"
  # Recorded like up.sh's daemons (PID, binary, order): ip netns exec execs
  # the server, so the PID is the server's; its command line names $BOX/.
  setsid ip netns exec "$EXT_NETNS" "$exe" "$BOX/$EXT_ACCESS_LOG" \
    "$EXT_HOST_IP" "${ports[@]}" </dev/null >"$BOX/logs/$EXT_DAEMON.log" 2>&1 8>&- &
  pid=$!
  echo "$pid" >"$BOX/pids/$EXT_DAEMON.pid"
  echo "$exe" >"$BOX/pids/$EXT_DAEMON.exe"
  grep -qxF "$EXT_DAEMON" "$BOX/pids/order" 2>/dev/null || echo "$EXT_DAEMON" >>"$BOX/pids/order"
  for ((i = 0; i < 100; i++)); do
    ext_serving && break
    proc_alive "$pid" || die "$EXT_DAEMON did not start (see $BOX/logs/$EXT_DAEMON.log)"
    sleep 0.05
  done
  ext_serving || die "$EXT_DAEMON does not listen (see $BOX/logs/$EXT_DAEMON.log)"
  log "external host $EXT_HOST_IP (netns $EXT_NETNS) serving :${ports[*]}, log $BOX/$EXT_ACCESS_LOG"
  ext_dns_up
}

# ext_dns_up: a real resolver on the external host (dnsmasq from Debian),
# authoritative for nothing but answering every name under $EXT_DNS_DOMAIN
# with the external host's address and refusing the rest (no upstream of
# its own: the box has no internet).
ext_dns_up() {
  local pid i
  # Its log file on the command line also marks the process as this box's
  # (daemon_pid looks for "$BOX/" there).
  setsid ip netns exec "$EXT_NETNS" dnsmasq --keep-in-foreground --log-facility="$BOX/logs/$EXT_DNS_DAEMON.log" \
    --conf-file=/dev/null --no-resolv --no-hosts --pid-file= --user=root --group=root \
    --bind-interfaces --listen-address="$EXT_HOST_IP" --port=53 \
    --address="/$EXT_DNS_DOMAIN/$EXT_HOST_IP" </dev/null >>"$BOX/logs/$EXT_DNS_DAEMON.log" 2>&1 8>&- &
  pid=$!
  echo "$pid" >"$BOX/pids/$EXT_DNS_DAEMON.pid"
  command -v dnsmasq >"$BOX/pids/$EXT_DNS_DAEMON.exe"
  grep -qxF "$EXT_DNS_DAEMON" "$BOX/pids/order" 2>/dev/null || echo "$EXT_DNS_DAEMON" >>"$BOX/pids/order"
  for ((i = 0; i < 100; i++)); do
    [[ -n "$(ip netns exec "$EXT_NETNS" ss -Hlun "sport = :53")" ]] && break
    proc_alive "$pid" || die "$EXT_DNS_DAEMON did not start (see $BOX/logs/$EXT_DNS_DAEMON.log)"
    sleep 0.05
  done
  log "external host answers DNS for *.$EXT_DNS_DOMAIN on $EXT_HOST_IP:53"
}

external_down() {
  daemon_down "$EXT_DNS_DAEMON"
  daemon_down "$EXT_DAEMON"
  # Deleting a netns with ip netns del only unmounts it: the veth goes once no
  # process is left in it. Delete the nodes' ends explicitly too.
  local n
  for n in $(node_indexes); do
    use_node "$n"
    ip -n "$NODE_NETNS" link del "$EXT_NODE_IF" 2>/dev/null || true
  done
  use_node 1
  netns_exists "$EXT_NETNS" && ip netns del "$EXT_NETNS"
  return 0
}

external_nad_apply() {
  "$KUBECTL" apply --server-side --field-manager=vpcnet-box -f "$REPO/config/box/external-nad.yaml" >/dev/null
  log "NetworkAttachmentDefinition vpcnet-system/ovn-vpc-external-network applied (macvlan on $EXT_NODE_IF)"
}

external_status() {
  ip -n "$EXT_NETNS" -br addr
  local n
  for n in $(node_indexes); do
    use_node "$n"
    ip -n "$NODE_NETNS" -br link show "$EXT_NODE_IF"
  done
  daemon_pid "$EXT_DAEMON" && tail -n 5 "$BOX/$EXT_ACCESS_LOG"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  nodes_recorded
  KUBECTL="${KUBECTL:-$K8S_BIN/kubectl}"
  export KUBECONFIG="$BOX/kubeconfig"
  case "${1:-}" in
    up) [[ -d "$BOX" ]] || die "no box in $BOX"; external_up ;;
    down) external_down ;;
    nad) external_nad_apply ;;
    status) external_status ;;
    *) echo "usage: $0 up|down|nad|status" >&2; exit 2 ;;
  esac
fi
