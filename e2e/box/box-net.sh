# The node's network namespace and its veth to the host (sourced by up.sh and
# down.sh; needs lib.sh).
# shellcheck shell=bash

# net_up: netns NODE_NETNS with NODE_VETH=NODE_IP, host end HOST_VETH=HOST_IP.
net_up() {
  # iproute2 creates /run/netns (a shared bind mount of itself) on first use.
  [[ -e /run/netns ]] || touch "$BOX/created-run-netns"
  ip netns add "$NODE_NETNS"
  echo "$NODE_NETNS" >"$BOX/netns"
  ip link add "$HOST_VETH" type veth peer name "$NODE_VETH" netns "$NODE_NETNS"
  ip addr add "$HOST_IP/$NET_PREFIX" dev "$HOST_VETH"
  ip link set "$HOST_VETH" up
  ip -n "$NODE_NETNS" link set lo up
  ip -n "$NODE_NETNS" addr add "$NODE_IP/$NET_PREFIX" dev "$NODE_VETH"
  ip -n "$NODE_NETNS" link set "$NODE_VETH" up
  ip -n "$NODE_NETNS" route add default via "$HOST_IP"
  # The box plays kube-proxy for the one Service hostNetwork pods need: the API.
  ip netns exec "$NODE_NETNS" iptables -w -t nat -A OUTPUT -d "$SERVICE_API_IP/32" -p tcp --dport 443 \
    -m comment --comment "vpcnet-box: kubernetes Service" -j DNAT --to-destination "$HOST_IP:$APISERVER_PORT"
}

# net_down: deletes the netns (with it every veth and tap inside) and the host
# end, if they are ours. Safe to call when nothing exists.
net_down() {
  [[ -f "$BOX/netns" || -f "$BOX/created-run-netns" ]] || return 0
  ip link del "$HOST_VETH" 2>/dev/null || true
  if netns_exists "$NODE_NETNS"; then
    ip netns del "$NODE_NETNS"
  fi
  if [[ -f "$BOX/created-run-netns" && -d /run/netns && -z "$(ls -A /run/netns)" ]]; then
    umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
  fi
  rm -f "$BOX/netns" "$BOX/created-run-netns"
}
