#!/usr/bin/env bash
# Prints the shell exports for using the running box: eval "$(e2e/box/env.sh)".
# Fails with a message if the box is not up.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$BOX_SCRIPTS/ovn.sh"
if [[ ! -f "$BOX/kubeconfig" ]] || ! daemon_pid kube-apiserver >/dev/null; then
  die "no box is up in $BOX (start it with e2e/box/up.sh)"
fi
echo "export VPCNET_BOX_DIR=$BOX"
echo "export KUBECONFIG=$BOX/kubeconfig"
echo "export PATH=$BOX/bin:\$PATH"
if [[ -f "$BOX/netns" ]]; then
  nodes_recorded
  # Every RAFT member: ovn-nbctl/ovn-sbctl (and our client) keep to the leader.
  echo "export OVN_NB_DB=$(central_remotes nb)"
  echo "export OVN_SB_DB=$(central_remotes sb)"
  echo "export VPCNET_BOX_NODES=$NODES"
  for n in $(node_indexes); do
    use_node "$n"
    echo "# $NODE_NAME: netns $NODE_NETNS, $NODE_IP, encap $UNDERLAY_IP, Open_vSwitch db unix:$OVS_SOCK"
    echo "#   a command in it (network only):            ip netns exec $NODE_NETNS CMD"
    echo "#   ... with its mounts (containerd, CNI):     nsenter -t \$(cat $BOX/pids/node-holder$NODE_SUFFIX.pid) -m -n CMD"
  done
fi
