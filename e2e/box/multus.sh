#!/usr/bin/env bash
# Multus on the box's nodes, one node per call (the one use_node chose; sourced by up.sh after lib.sh; or standalone against
# a running box: `multus.sh install|uninstall|status`).
#
#   multus_install    builds the thin plugin once (build-multus.sh), copies it
#                     with Debian's reference macvlan + static (and loopback, if
#                     missing) into the node's /opt/cni/bin, applies
#                     config/multus (NAD CRD, RBAC, token Secret), writes the
#                     node's /etc/cni/net.d/multus.d/multus.kubeconfig and
#                     /etc/cni/net.d/00-multus.conf: the lexicographically first
#                     conf, so containerd hands every pod to Multus, which runs
#                     the vpcnet conflist as the default network (eth0) and the
#                     pod's `k8s.v1.cni.cncf.io/networks` as extra legs.
#   multus_uninstall  removes 00-multus.conf and the kubeconfig from the node
#                     (pods created afterwards use 10-vpcnet.conflist directly).
#
# Needs: BOX, REPO, K8S_BIN, API_SERVER, node_exec (lib.sh); KUBECTL (up.sh,
# defaults to the box's kubectl).
# Env: MULTUS_VERSION (build-multus.sh), MULTUS_CLUSTER_NETWORK (default
#      vpcnet, the name in 10-vpcnet.conflist), MULTUS_LOG_LEVEL (default verbose).
# shellcheck shell=bash

MULTUS_CONF=/etc/cni/net.d/00-multus.conf
MULTUS_KUBECONFIG=/etc/cni/net.d/multus.d/multus.kubeconfig
# The default network by its CNI name ("name" of 10-vpcnet.conflist in confDir),
# not by path: Multus 4.2 re-encodes a conflist loaded by path through its typed
# structs and drops every plugin-specific field (vpcnet-cni then gets no
# kubeconfig/ovsdb/bridge); by name it passes the file's bytes unchanged. A
# name is first looked up as a NetworkAttachmentDefinition in kube-system
# (NotFound), then in confDir.
MULTUS_CLUSTER_NETWORK="${MULTUS_CLUSTER_NETWORK:-vpcnet}"
MULTUS_REF_PLUGINS_DIR=/usr/lib/cni   # Debian's containernetworking-plugins

# multus_token: the multus ServiceAccount's token, once the token controller
# has filled the Secret.
multus_token() {
  local t
  t=$("$KUBECTL" -n kube-system get secret multus-token -o jsonpath='{.data.token}' 2>/dev/null) &&
    [[ -n "$t" ]] && base64 -d <<<"$t"
}

# multus_node_write FILE MODE: writes stdin to FILE in the node's mount
# namespace, atomically (temp file + rename).
multus_node_write() {
  local file=$1 mode=$2
  # The script's $1/$2 are the inner sh's arguments, expanded there.
  # shellcheck disable=SC2016
  node_exec sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1.tmp" && chmod "$2" "$1.tmp" && mv -f "$1.tmp" "$1"' \
    sh "$file" "$mode"
}

multus_install() {
  local t0=$EPOCHREALTIME multus p token
  multus=$("$BOX_SCRIPTS/build-multus.sh") || die "building Multus failed"
  # Binaries first: a conf that names a missing plugin fails every pod.
  node_exec mkdir -p /opt/cni/bin /etc/cni/net.d/multus.d
  node_exec install -m 0755 "$multus" /opt/cni/bin/.multus.tmp
  node_exec mv -f /opt/cni/bin/.multus.tmp /opt/cni/bin/multus
  for p in macvlan static; do
    [[ -x "$MULTUS_REF_PLUGINS_DIR/$p" ]] ||
      die "$MULTUS_REF_PLUGINS_DIR/$p missing (Debian package containernetworking-plugins)"
    node_exec install -m 0755 "$MULTUS_REF_PLUGINS_DIR/$p" "/opt/cni/bin/$p"
  done
  # containerd sets up each sandbox's lo with the loopback plugin.
  if ! node_exec test -x /opt/cni/bin/loopback && [[ -x "$MULTUS_REF_PLUGINS_DIR/loopback" ]]; then
    node_exec install -m 0755 "$MULTUS_REF_PLUGINS_DIR/loopback" /opt/cni/bin/loopback
  fi

  "$KUBECTL" apply --server-side --field-manager=vpcnet-box -f "$REPO/config/multus/nad-crd.yaml" >/dev/null
  "$KUBECTL" apply --server-side --field-manager=vpcnet-box -f "$REPO/config/multus/rbac.yaml" >/dev/null
  "$KUBECTL" wait --for condition=established crd/network-attachment-definitions.k8s.cni.cncf.io \
    --timeout=60s >/dev/null || die "the NetworkAttachmentDefinition CRD was not established"
  local deadline=$((SECONDS + 30))
  until token=$(multus_token); do
    ((SECONDS < deadline)) || die "kube-system/multus-token got no token in 30s (token controller?)"
    sleep 0.2
  done

  multus_node_write "$MULTUS_KUBECONFIG" 600 <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $API_SERVER
    certificate-authority-data: $("$KUBECTL" -n kube-system get secret multus-token -o jsonpath='{.data.ca\.crt}')
users:
- name: multus
  user:
    token: $token
contexts:
- name: multus
  context: {cluster: local, user: multus}
current-context: multus
EOF
  # Written last: its appearance switches new pods to Multus. No
  # readinessindicatorfile: the default network's conflist is read per ADD.
  multus_node_write "$MULTUS_CONF" 644 <<EOF
{
  "cniVersion": "1.0.0",
  "name": "multus-cni-network",
  "type": "multus",
  "kubeconfig": "$MULTUS_KUBECONFIG",
  "clusterNetwork": "$MULTUS_CLUSTER_NETWORK",
  "confDir": "/etc/cni/net.d",
  "cniDir": "/var/lib/cni/multus",
  "binDir": "/opt/cni/bin",
  "logFile": "/var/log/multus.log",
  "logLevel": "${MULTUS_LOG_LEVEL:-verbose}",
  "logToStderr": false
}
EOF
  log "multus $("$multus" -version 2>&1 | sed -n 's/^multus: version:\([^(]*\).*/\1/p') installed in $NODE_NAME" \
    "($MULTUS_CONF -> $MULTUS_CLUSTER_NETWORK) in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')s"
}

multus_uninstall() {
  node_exec rm -f "$MULTUS_CONF" "$MULTUS_KUBECONFIG"
  log "multus removed from the CNI configuration of $NODE_NAME"
}

multus_status() {
  node_exec ls -l /etc/cni/net.d /opt/cni/bin
  node_exec cat "$MULTUS_CONF"
  "$KUBECTL" get crd network-attachment-definitions.k8s.cni.cncf.io
  "$KUBECTL" get net-attach-def -A
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  KUBECTL="${KUBECTL:-$K8S_BIN/kubectl}"
  export KUBECONFIG="$BOX/kubeconfig"
  [[ -f "$BOX/kubeconfig" ]] || die "no box in $BOX"
  nodes_recorded
  for n in $(node_indexes); do
    use_node "$n"
    case "${1:-}" in
      install) multus_install ;;
      uninstall) multus_uninstall ;;
      status) multus_status ;;
      *) echo "usage: $0 install|uninstall|status" >&2; exit 2 ;;
    esac
  done
fi
