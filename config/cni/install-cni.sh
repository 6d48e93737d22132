#!/bin/sh
# Installs the vpcnet CNI plugin on a node; run by the vpcnet-cni DaemonSet
# (hostNetwork, with the node's /opt/cni/bin and /etc/cni/net.d mounted).
#   install-cni.sh          install, then keep the kubeconfig's token fresh
#   install-cni.sh --once   install and exit (init container)
# The plugin reads pods' annotations with a kubeconfig built from this pod's
# ServiceAccount token; the API address is the one the kubelet injects
# (KUBERNETES_SERVICE_HOST/PORT), reachable from the node's network namespace.
# Env: CNI_BIN_DIR (/host/opt/cni/bin), CNI_CONF_DIR (/host/etc/cni/net.d),
#      CNI_NODE_CONF_DIR (the conf dir as the node sees it: /etc/cni/net.d),
#      OVSDB (unix:/var/run/openvswitch/db.sock), BRIDGE (br-int),
#      PROBE_CIDR (this node's probe addresses; empty: no probe path),
#      PROBE_KUBELET_CGROUP (the kubelet's cgroup v2 path; empty: any process),
#      HOST_EGRESS_NAMESPACE (the one namespace whose pods may carry
#        vpcnet.io/host-egress; empty: no pod may),
#      REFRESH_SECONDS (300).
set -eu
BIN_DIR="${CNI_BIN_DIR:-/host/opt/cni/bin}"
CONF_DIR="${CNI_CONF_DIR:-/host/etc/cni/net.d}"
NODE_CONF_DIR="${CNI_NODE_CONF_DIR:-/etc/cni/net.d}"
SA=/var/run/secrets/kubernetes.io/serviceaccount
SRC=/opt/vpcnet/bin/vpcnet-cni

# write FILE: atomically (temp file + rename) from stdin.
write() {
  cat >"$1.tmp" && mv -f "$1.tmp" "$1"
}

kubeconfig() {
  host="${KUBERNETES_SERVICE_HOST:?not set: is this running in a pod?}"
  case "$host" in *:*) host="[$host]" ;; esac
  cat <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$host:${KUBERNETES_SERVICE_PORT:-443}
    certificate-authority-data: $(base64 -w0 "$SA/ca.crt")
users:
- name: vpcnet-cni
  user:
    token: $(cat "$SA/token")
contexts:
- name: vpcnet-cni
  context: {cluster: local, user: vpcnet-cni}
current-context: vpcnet-cni
KC
}

# probe_fields: the probe path's settings as JSON members (with a leading
# comma), or nothing when PROBE_CIDR is empty.
probe_fields() {
  [ -n "${PROBE_CIDR:-}" ] || return 0
  printf ',\n      "probeCidr": "%s"' "$PROBE_CIDR"
  [ -n "${PROBE_KUBELET_CGROUP:-}" ] && printf ',\n      "probeKubeletCgroup": "%s"' "$PROBE_KUBELET_CGROUP"
  return 0
}

# egress_field: the host egress namespace as a JSON member (with a leading
# comma), or nothing when HOST_EGRESS_NAMESPACE is empty.
egress_field() {
  [ -n "${HOST_EGRESS_NAMESPACE:-}" ] || return 0
  printf ',\n      "hostEgressNamespace": "%s"' "$HOST_EGRESS_NAMESPACE"
}

install() {
  mkdir -p "$BIN_DIR" "$CONF_DIR"
  cp "$SRC" "$BIN_DIR/.vpcnet-cni.tmp" && mv -f "$BIN_DIR/.vpcnet-cni.tmp" "$BIN_DIR/vpcnet-cni"
  kubeconfig | write "$CONF_DIR/vpcnet.kubeconfig"
  chmod 600 "$CONF_DIR/vpcnet.kubeconfig"
  # The conflist last: its appearance is what marks the node's network ready.
  write "$CONF_DIR/10-vpcnet.conflist" <<CONF
{
  "cniVersion": "1.0.0",
  "name": "vpcnet",
  "plugins": [
    {
      "type": "vpcnet-cni",
      "kubeconfig": "$NODE_CONF_DIR/vpcnet.kubeconfig",
      "ovsdb": "${OVSDB:-unix:/var/run/openvswitch/db.sock}",
      "bridge": "${BRIDGE:-br-int}"$(probe_fields)$(egress_field)
    }
  ]
}
CONF
  echo "vpcnet-cni installed into $BIN_DIR, configuration in $CONF_DIR"
}

install
[ "${1:-}" = --once ] && exit 0
# The projected token rotates: rewrite the kubeconfig when it changes.
last=$(cat "$SA/token")
trap 'exit 0' TERM INT
while :; do
  sleep "${REFRESH_SECONDS:-300}" &
  wait $! || true
  now=$(cat "$SA/token")
  if [ "$now" != "$last" ]; then
    kubeconfig | write "$CONF_DIR/vpcnet.kubeconfig"
    last=$now
  fi
done
