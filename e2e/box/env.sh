#!/usr/bin/env bash
# Prints the shell exports for using the running box: eval "$(e2e/box/env.sh)".
# Fails with a message if the box is not up.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [[ ! -f "$BOX/kubeconfig" ]] || ! daemon_pid kube-apiserver >/dev/null; then
  die "no box is up in $BOX (start it with e2e/box/up.sh)"
fi
echo "export VPCNET_BOX_DIR=$BOX"
echo "export KUBECONFIG=$BOX/kubeconfig"
echo "export PATH=$BOX/bin:\$PATH"
if [[ -f "$BOX/netns" ]]; then
  echo "export OVN_NB_DB=unix:$BOX/ovn/ovnnb_db.sock"
  echo "export OVN_SB_DB=unix:$BOX/ovn/ovnsb_db.sock"
  echo "export VPCNET_BOX_OVSDB=unix:$BOX/ovs/db.sock   # the node's Open_vSwitch db"
  echo "export VPCNET_BOX_NODE=$NODE_NAME VPCNET_BOX_NETNS=$NODE_NETNS"
  echo "# run a command in the node (network only):      ip netns exec $NODE_NETNS CMD"
  echo "# ... with the node's mounts (containerd, CNI):   nsenter -t \$(cat $BOX/pids/node-holder.pid) -m -n CMD"
fi
