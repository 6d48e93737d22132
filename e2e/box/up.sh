#!/usr/bin/env bash
# Starts the cluster-in-a-box control plane on loopback: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler. State (certs, etcd data, logs, PIDs,
# kubeconfig) lives in ${VPCNET_BOX_DIR:-/tmp/vpcnet-box}; down.sh removes it.
# The box's constants (ports, addresses, names) are in box.env; the helpers
# every box script uses in lib.sh.
#
# Env: VPCNET_BOX_DIR   state dir (default BOX_DIR_DEFAULT of box.env)
#      VPCNET_CRDS_DIR  CRDs to apply once the API is up (default <repo>/crds)
#      VPCNET_CACHE, K8S_VERSION  where/which Kubernetes build to use
#      VPCNET_BOX_ADVERTISE_IP  apiserver advertise address (default 10.255.0.1,
#                               the host's bridge to the nodes)
#      VPCNET_BOX_TARGET  cargo target dir with release binaries (default <repo>/target-box)
#      VPCNET_BOX_NODES  how many nodes (default NODES_DEFAULT of box.env)
#      VPCNET_BOX_NODE_MONITOR_GRACE  the controller-manager's
#                        --node-monitor-grace-period (default 50s, Kubernetes'
#                        own): how long a silent node takes to be judged lost
#      VPCNET_BOX_NODE_MONITOR_PERIOD  --node-monitor-period (default 5s)
#      VPCNET_BOX_NODE_LEASE_SECONDS  the kubelets' nodeLeaseDurationSeconds
#                        (default 40; they renew at a quarter of it)
#      VPCNET_BOX_NO_NODE=1  control plane only (no netns, OVN, node, images, config)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$BOX_SCRIPTS/box-net.sh"
source "$BOX_SCRIPTS/ovn.sh"
source "$BOX_SCRIPTS/node.sh"
source "$BOX_SCRIPTS/images.sh"
source "$BOX_SCRIPTS/config.sh"
source "$BOX_SCRIPTS/multus.sh"
source "$BOX_SCRIPTS/external.sh"
CRDS_DIR="${VPCNET_CRDS_DIR:-$REPO/crds}"

# ---------------------------------------------------------------- certificates

gen_certs() {
  mkdir -p "$PKI"
  new_ca ca vpcnet-box-ca
  # Front proxy (request-header authentication): aggregated APIs, and what the
  # controller-manager and scheduler read to delegate authentication.
  new_ca front-proxy-ca vpcnet-box-front-proxy-ca
  local client='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n'
  local sans="DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  sans+=",DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$SERVICE_API_IP"
  [[ "$ADVERTISE_IP" == 127.0.0.1 ]] || sans+=",IP:$ADVERTISE_IP"
  sign apiserver "/CN=kube-apiserver" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=$sans\n"
  sign admin "/O=system:masters/CN=vpcnet-box-admin" "$client"
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  sign controller-manager "/CN=system:kube-controller-manager" "$client"
  sign scheduler "/CN=system:kube-scheduler" "$client"
  sign front-proxy-client "/CN=front-proxy-client" "$client" front-proxy-ca
  # Service-account token signing key pair (ES256).
  new_key "$PKI/sa.key"
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# ---------------------------------------------------------------- daemons

start_etcd() {
  start_daemon etcd "$K8S_BIN/etcd" \
    --name=box --data-dir="$BOX/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="box=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --unsafe-no-fsync --log-level=warn
  wait_for "etcd health" 30 etcd curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
}

start_apiserver() {
  start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address="$ADVERTISE_IP" --secure-port="$APISERVER_PORT" --advertise-address="$ADVERTISE_IP" \
    --cert-dir="$PKI/apiserver-generated" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --allow-privileged=true \
    --profiling=false
  wait_for "kube-apiserver /readyz" 60 kube-apiserver api /readyz
  write_kubeconfig "$BOX/kubeconfig" admin
}

start_controller_manager() {
  write_kubeconfig "$BOX/controller-manager.kubeconfig" controller-manager
  local kc="$BOX/controller-manager.kubeconfig"
  # "*" already includes nodelifecycle (without it a node keeps its not-ready
  # taint); named explicitly so that stays true if the list is narrowed.
  start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$CONTROLLER_MANAGER_PORT" \
    --cert-dir="$PKI/controller-manager-generated" \
    --controllers='*,node-lifecycle-controller' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --kube-api-qps=200 --kube-api-burst=400 \
    --node-monitor-grace-period="${VPCNET_BOX_NODE_MONITOR_GRACE:-50s}" \
    --node-monitor-period="${VPCNET_BOX_NODE_MONITOR_PERIOD:-5s}" \
    --leader-elect=false --profiling=false
}

start_scheduler() {
  write_kubeconfig "$BOX/scheduler.kubeconfig" scheduler
  local kc="$BOX/scheduler.kubeconfig"
  start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --leader-elect=false --profiling=false
}

apply_crds() {
  if ! compgen -G "$CRDS_DIR/*.yaml" >/dev/null && ! compgen -G "$CRDS_DIR/*.yml" >/dev/null; then
    log "no CRDs in $CRDS_DIR yet; skipping"
    return 0
  fi
  "$KUBECTL" apply --server-side --field-manager=vpcnet-box -f "$CRDS_DIR" >/dev/null
  "$KUBECTL" wait --for condition=established crd --all --timeout=60s >/dev/null
  log "CRDs applied and established from $CRDS_DIR"
}

# The controller-manager's serviceaccount controller creates it: proves it works.
wait_default_serviceaccount() {
  wait_for "the default ServiceAccount" 60 kube-controller-manager \
    api /api/v1/namespaces/default/serviceaccounts/default
}

# phase NAME: records the time since the previous phase.
PHASES=()
phase() {
  local now=$EPOCHREALTIME
  PHASES+=("$1 $(awk -v a="$PHASE_T" -v b="$now" 'BEGIN {printf "%.1f", b - a}')")
  PHASE_T=$now
}

summary() {
  local elapsed=$1 total=0 name pid kb p
  echo "box up in ${elapsed}s (state: $BOX)"
  for p in "${PHASES[@]}"; do printf '  %-24s %6ss\n' "${p% *}" "${p##* }"; done
  while read -r name; do
    pid=$(daemon_pid "$name") || die "$name is not running"
    kb=$(rss_kb "$pid")
    total=$((total + kb))
    printf '  %-24s pid %-7s rss %4d MB\n' "$name" "$pid" $((kb / 1024))
  done <"$BOX/pids/order"
  printf '  %-24s             rss %4d MB\n' "total (daemons)" $((total / 1024))
  if [[ -f "$BOX/netns" ]]; then
    total=0
    # node_procs of every node, each process once (pods' cgroups are shared).
    for pid in $(for n in $(node_indexes); do use_node "$n"; node_procs "$(holder_pid)"; done | sort -u); do
      grep -qxF "$pid" < <(cat "$BOX"/pids/*.pid) && continue
      kb=$(rss_kb "$pid"); total=$((total + kb))
    done
    printf '  %-24s             rss %4d MB\n' "pods + shims ($NODES nodes)" $((total / 1024))
  fi
  "$BOX_SCRIPTS/env.sh"
}

on_exit() {
  local rc=$?
  ((rc == 0)) && return 0
  log "up failed (exit $rc); last log lines:"
  for f in "$BOX"/logs/*.log; do
    [[ -f "$f" ]] || continue
    echo "--- $f" >&2
    tail -n 8 "$f" | cut -c1-400 >&2
  done
  rm -rf "$BOX.failed-logs" && cp -r "$BOX/logs" "$BOX.failed-logs" 2>/dev/null &&
    log "logs kept in $BOX.failed-logs"
  # The reason goes last: the log tails above would push it out of view.
  local why
  why=$(cat "$BOX/failure" 2>/dev/null) || why="command failed: $FAILED_COMMAND"
  log "stopping what was started"
  "$BOX_SCRIPTS/down.sh" >&2 || true
  log "up failed: $why"
  exit "$rc"
}

# ---------------------------------------------------------------- main

main() {
  "$BOX_SCRIPTS/install-deps.sh"
  "$BOX_SCRIPTS/build-k8s.sh"
  box_lock
  if [[ -e "$BOX" ]]; then
    log "found state of a previous box in $BOX; cleaning it up first"
    "$BOX_SCRIPTS/down.sh"
  fi
  local port
  for port in $ETCD_CLIENT_PORT $ETCD_PEER_PORT $APISERVER_PORT $CONTROLLER_MANAGER_PORT $SCHEDULER_PORT; do
    port_free "$port" || die "port $port on loopback is taken (another box with a different VPCNET_BOX_DIR?)"
  done

  local t0=$EPOCHREALTIME
  PHASE_T=$t0
  mkdir -p "$BOX/logs" "$BOX/pids" "$BOX/bin"
  trap on_exit EXIT
  # Records the command that made set -e stop, for on_exit; -E lets functions
  # and subshells inherit the trap.
  FAILED_COMMAND="(unknown)"
  set -E
  trap 'FAILED_COMMAND="line $LINENO: $BASH_COMMAND"' ERR
  KUBECTL="$K8S_BIN/kubectl"
  ln -s "$KUBECTL" "$BOX/bin/kubectl"
  export KUBECONFIG="$BOX/kubeconfig"

  local node=1 n
  [[ -n "${VPCNET_BOX_NO_NODE:-}" || "$ADVERTISE_IP" == 127.0.0.1 ]] && node=""
  if [[ -n "$node" ]]; then
    host_net_up
    for n in $(node_indexes); do
      use_node "$n"
      net_up
    done
    external_up
  fi
  gen_certs
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  apply_crds
  wait_default_serviceaccount
  phase "control plane"
  if [[ -n "$node" ]]; then
    ovn_central_up
    for n in $(node_indexes); do
      use_node "$n"
      node_holder_up
      ovs_node_up
    done
    phase "OVN"
    for n in $(node_indexes); do
      use_node "$n"
      containerd_up
      kubelet_up
      multus_install
    done
    phase "nodes ($NODES)"
    # Through a file, not <(...): a failed build must stop up.
    local archives images=(pause testapp operator cni natgw dns)
    build_images "${images[@]}" >"$BOX/images.list"
    mapfile -t archives <"$BOX/images.list"
    ((${#archives[@]} == ${#images[@]})) ||
      die "the box needs all of ${images[*]}; build the release binaries (cargo build --release)"
    for n in $(node_indexes); do
      use_node "$n"
      import_images "${archives[@]}"
    done
    use_node 1
    phase "images"
    config_up
    external_nad_apply
    phase "config"
  fi
  summary "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')"
}

# Sourcing this file (for tests) defines the functions without starting anything.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
