#!/usr/bin/env bash
# OLM v1 on a running box, for `cargo xtask olm-e2e` (not part of CI):
#
#   olmv1.sh up     a loopback OCI registry (in memory), OLM v1's CRDs and
#                   namespace, catalogd and operator-controller as host
#                   daemons talking to the box's API server as its admin;
#                   catalogd serves catalogs over TLS on 127.0.0.1 with a
#                   certificate of a CA of its own, which operator-controller
#                   trusts; both pull from the registry over plain HTTP
#                   (a registries.conf of their own marks it insecure,
#                   mounted over /etc/containers in their mount namespace).
#   olmv1.sh down   stops the three daemons (by their recorded PIDs), removes
#                   the CRDs (and with them every ClusterCatalog and
#                   ClusterExtension) and the namespace. down.sh stops the
#                   daemons too.
#
# Binaries from build-olmv1.sh (run it first). Ports in box.env (OLMV1_*).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
nodes_recorded

DIR="$BOX/olmv1"
KUBECTL=("$K8S_BIN/kubectl" --kubeconfig "$BOX/kubeconfig")

listening() { ! port_free "$1"; }

olmv1_up() {
  local olm bin
  olm=$(bash "$BOX_SCRIPTS/build-olmv1.sh" --check)
  bin="$olm/bin"
  [[ -f "$BOX/kubeconfig" ]] || die "the box is not up (no $BOX/kubeconfig)"
  mkdir -p "$DIR/pki/cas" "$DIR/catalogd-cache" "$DIR/operator-controller-cache"
  local p
  for p in "$OLMV1_REGISTRY_PORT" "$OLMV1_CATALOG_PORT" "$OLMV1_CATALOGD_WEBHOOK_PORT" \
    "$OLMV1_CATALOGD_METRICS_PORT" "$OLMV1_CATALOGD_PROBE_PORT" \
    "$OLMV1_CONTROLLER_METRICS_PORT" "$OLMV1_CONTROLLER_PROBE_PORT"; do
    port_free "$p" || die "port $p is taken: is OLM v1 up already? (olmv1.sh down)"
  done

  # catalogd's serving certificate, from a CA only operator-controller trusts.
  local PKI="$DIR/pki"
  new_ca olmv1-ca "vpcnet-box OLM v1 CA"
  sign catalogd "/CN=catalogd" "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature" olmv1-ca
  sign operator-controller "/CN=operator-controller" "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature" olmv1-ca
  cp "$PKI/olmv1-ca.crt" "$PKI/cas/olmv1-ca.crt"
  # containers/image (both daemons pull with it) reads /etc/containers and
  # nothing else: they run with this directory mounted there instead.
  mkdir -p "$DIR/containers"
  cat >"$DIR/containers/registries.conf" <<CONF
[[registry]]
location = "127.0.0.1:$OLMV1_REGISTRY_PORT"
insecure = true
CONF
  echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$DIR/containers/policy.json"
  local etc="$DIR/containers:/etc/containers"
  export KUBECONFIG="$BOX/kubeconfig"

  log "OLM v1: registry on 127.0.0.1:$OLMV1_REGISTRY_PORT"
  # The trailing argument is ignored by the registry; it names the box dir
  # so that down.sh recognises the process as the box's.
  start_daemon olmv1-registry "$bin/registry" -port "$OLMV1_REGISTRY_PORT" "$DIR"
  wait_for "the registry" 20 olmv1-registry listening "$OLMV1_REGISTRY_PORT"

  log "OLM v1: CRDs and namespace $OLMV1_NAMESPACE"
  "${KUBECTL[@]}" apply --server-side -f "$olm/crds/clustercatalogs.yaml" -f "$olm/crds/clusterextensions.yaml" >/dev/null
  "${KUBECTL[@]}" wait --for=condition=Established --timeout=60s \
    crd/clustercatalogs.olm.operatorframework.io crd/clusterextensions.olm.operatorframework.io >/dev/null
  "${KUBECTL[@]}" create namespace "$OLMV1_NAMESPACE" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f - >/dev/null

  log "OLM v1: catalogd (catalogs on https://127.0.0.1:$OLMV1_CATALOG_PORT)"
  start_daemon olmv1-catalogd "$bin/catalogd" --wrap bind "$etc" -- \
    --system-namespace "$OLMV1_NAMESPACE" \
    --catalogs-server-addr "127.0.0.1:$OLMV1_CATALOG_PORT" \
    --external-address "127.0.0.1:$OLMV1_CATALOG_PORT" \
    --tls-cert "$PKI/catalogd.crt" --tls-key "$PKI/catalogd.key" \
    --webhook-server-port "$OLMV1_CATALOGD_WEBHOOK_PORT" \
    --metrics-bind-address "127.0.0.1:$OLMV1_CATALOGD_METRICS_PORT" \
    --health-probe-bind-address "127.0.0.1:$OLMV1_CATALOGD_PROBE_PORT" \
    --cache-dir "$DIR/catalogd-cache"
  wait_for "catalogd" 60 olmv1-catalogd curl -fsS "http://127.0.0.1:$OLMV1_CATALOGD_PROBE_PORT/readyz"

  log "OLM v1: operator-controller"
  start_daemon olmv1-operator-controller "$bin/operator-controller" --wrap bind "$etc" -- \
    --system-namespace "$OLMV1_NAMESPACE" \
    --catalogd-cas-dir "$PKI/cas" --pull-cas-dir "$PKI/cas" \
    --tls-cert "$PKI/operator-controller.crt" --tls-key "$PKI/operator-controller.key" \
    --metrics-bind-address "127.0.0.1:$OLMV1_CONTROLLER_METRICS_PORT" \
    --health-probe-bind-address "127.0.0.1:$OLMV1_CONTROLLER_PROBE_PORT" \
    --cache-path "$DIR/operator-controller-cache"
  wait_for "operator-controller" 60 olmv1-operator-controller curl -fsS "http://127.0.0.1:$OLMV1_CONTROLLER_PROBE_PORT/readyz"
  log "OLM v1 is up (logs: $BOX/logs/olmv1-*.log; crane: $bin/crane)"
}

olmv1_down() {
  daemon_down olmv1-operator-controller
  daemon_down olmv1-catalogd
  daemon_down olmv1-registry
  if [[ -f "$BOX/kubeconfig" ]]; then
    # The daemons are gone: nothing removes the finalizers they put on
    # their objects, so take them off before the CRDs go.
    local kind o
    for kind in clusterextensions.olm.operatorframework.io clustercatalogs.olm.operatorframework.io; do
      for o in $("${KUBECTL[@]}" get "$kind" -o name 2>/dev/null); do
        "${KUBECTL[@]}" patch "$o" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
      done
      "${KUBECTL[@]}" delete crd "$kind" --ignore-not-found --wait=true >/dev/null 2>&1 || true
    done
    "${KUBECTL[@]}" delete namespace "$OLMV1_NAMESPACE" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
  log "OLM v1 is down"
}

case "${1:-}" in
  up) olmv1_up ;;
  down) olmv1_down ;;
  *)
    echo "usage: olmv1.sh up|down" >&2
    exit 2
    ;;
esac
