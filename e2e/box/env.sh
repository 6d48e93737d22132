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
