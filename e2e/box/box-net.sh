# The nodes' networks (sourced by up.sh and down.sh; needs lib.sh):
#
#   host: bridge HOST_BRIDGE (HOST_IP)      bridge UNDERLAY_BRIDGE (no address)
#           |  veth HOST_VETH_PREFIX-n<i>      |  veth HOST_VETH_PREFIX-u<i>
#   node i: NODE_VETH = NODE_NET_BASE.(1+i)   UNDERLAY_IF, a port of the node's
#           (kubelet, API, exec/logs)         OVS bridge br-ul = UNDERLAY_BASE.i
#                                             (the Geneve tunnels' encap IP)
#
# The underlay is a network of its own because OVS's userspace datapath sends
# tunnel packets only through an OVS bridge that holds the local address
# (ovn.sh); the node's main interface stays a plain kernel interface.
# shellcheck shell=bash

# host_net_up: the host's two bridges.
host_net_up() {
  # iproute2 creates /run/netns (a shared bind mount of itself) on first use.
  [[ -e /run/netns ]] || touch "$BOX/created-run-netns"
  echo "$NODES" >"$BOX/nodes"
  ip link add "$HOST_BRIDGE" type bridge
  echo "$HOST_BRIDGE" >>"$BOX/host-links"
  ip addr add "$HOST_IP/$NET_PREFIX" dev "$HOST_BRIDGE"
  ip link set "$HOST_BRIDGE" up
  ip link add "$UNDERLAY_BRIDGE" type bridge
  echo "$UNDERLAY_BRIDGE" >>"$BOX/host-links"
  ip link set "$UNDERLAY_BRIDGE" up
}

# net_up: the chosen node's netns, its veth on the host bridge and its
# underlay veth (the address of the underlay goes on br-ul, see ovs_node_up).
net_up() {
  ip netns add "$NODE_NETNS"
  echo "$NODE_NETNS" >>"$BOX/netns"
  ip link add "$HOST_VETH" type veth peer name "$NODE_VETH" netns "$NODE_NETNS"
  echo "$HOST_VETH" >>"$BOX/host-links"
  ip link set "$HOST_VETH" master "$HOST_BRIDGE" up
  ip link add "$HOST_UNDERLAY_VETH" type veth peer name "$UNDERLAY_IF" netns "$NODE_NETNS"
  echo "$HOST_UNDERLAY_VETH" >>"$BOX/host-links"
  ip link set "$HOST_UNDERLAY_VETH" master "$UNDERLAY_BRIDGE" up
  ip -n "$NODE_NETNS" link set lo up
  ip -n "$NODE_NETNS" addr add "$NODE_IP/$NET_PREFIX" dev "$NODE_VETH"
  ip -n "$NODE_NETNS" link set "$NODE_VETH" up
  ip -n "$NODE_NETNS" link set "$UNDERLAY_IF" up
  ip -n "$NODE_NETNS" route add default via "$HOST_IP"
  # A node forwards, as every Kubernetes node does (pods with host egress
  # need it). A new netns copies the host's setting, which is 0 on a fresh
  # machine: say it.
  ip netns exec "$NODE_NETNS" sysctl -qw net.ipv4.ip_forward=1
  # The box plays kube-proxy for the one Service hostNetwork pods need: the API.
  ip netns exec "$NODE_NETNS" iptables -w -t nat -A OUTPUT -d "$SERVICE_API_IP/32" -p tcp --dport 443 \
    -m comment --comment "vpcnet-box: kubernetes Service" -j DNAT --to-destination "$HOST_IP:$APISERVER_PORT"
}

# net_down: deletes every node's netns (with every veth and tap inside) and the
# host links up created. Safe to call when nothing exists.
net_down() {
  [[ -f "$BOX/netns" || -f "$BOX/host-links" || -f "$BOX/created-run-netns" ]] || return 0
  local l ns
  if [[ -f "$BOX/host-links" ]]; then
    while read -r l; do ip link del "$l" 2>/dev/null || true; done < <(tac "$BOX/host-links")
  fi
  if [[ -f "$BOX/netns" ]]; then
    while read -r ns; do
      if netns_exists "$ns"; then ip netns del "$ns"; fi
    done <"$BOX/netns"
  fi
  if [[ -f "$BOX/created-run-netns" && -d /run/netns && -z "$(ls -A /run/netns)" ]]; then
    umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
  fi
  rm -f "$BOX/netns" "$BOX/host-links" "$BOX/created-run-netns"
}
