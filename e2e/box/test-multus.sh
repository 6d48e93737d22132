#!/usr/bin/env bash
# End-to-end check of Multus on a running box: a pod with a second interface on
# the external network. Installs Multus, the external network and its NAD
# first when missing. Then: a testapp pod in `default` annotated for
# ovn-vpc-external-network with ips 172.16.3.150/24 must get Running with eth0
# from vpcnet (10.16.0.0/16) and net1 172.16.3.150; curl from the pod to the
# external host (172.16.3.2) must work and the host must log the pod's net1
# address; after deletion nothing of net1 is left on the node. Prints timings.
#
# Env: VPCNET_BOX_DIR; TEST_POD (default multus-ext), TEST_NET1_IP (default
#      172.16.3.150), TEST_ROUNDS (default 2: the second round reuses the
#      address, which only works if the first round cleaned up).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$BOX_SCRIPTS/multus.sh"
source "$BOX_SCRIPTS/external.sh"
KUBECTL="${KUBECTL:-$K8S_BIN/kubectl}"
export KUBECONFIG="$BOX/kubeconfig"
[[ -f "$BOX/kubeconfig" ]] || die "no box in $BOX"
POD="${TEST_POD:-multus-ext}"
NET1_IP="${TEST_NET1_IP:-172.16.3.150}"
ROUNDS="${TEST_ROUNDS:-2}"
NAD_NS=vpcnet-system
NAD_NAME=ovn-vpc-external-network

ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}'; }
fail() { log "FAIL: $*"; "$KUBECTL" -n default describe pod "$POD" 2>/dev/null | tail -n 15 >&2 || true
  node_exec tail -n 20 /var/log/multus.log >&2 || true; exit 1; }

# ---- setup (each step only when missing)
t=$EPOCHREALTIME
node_exec test -s "$MULTUS_CONF" || multus_install
daemon_pid "$EXT_DAEMON" >/dev/null || external_up
"$KUBECTL" get ns "$NAD_NS" >/dev/null 2>&1 || "$KUBECTL" create ns "$NAD_NS" >/dev/null
external_nad_apply
node_exec test -s /etc/cni/net.d/10-vpcnet.conflist ||
  log "WARNING: no 10-vpcnet.conflist in the node: the default network (eth0) will fail"
log "setup $(ms_since "$t")s"

# node_leftovers: macvlan links on ext0 in the node's namespace, and Multus'
# cache entries for the test pod.
node_leftovers() {
  ip -n "$NODE_NETNS" -o link show type macvlan 2>/dev/null
  node_exec sh -c 'grep -ls "\"'"$POD"'\"" /var/lib/cni/multus/* /var/lib/cni/multus/results/* 2>/dev/null' || true
}

round() {
  local n=$1 t0 t_run t_curl body ip_eth0 ip_net1 status uid
  "$KUBECTL" -n default delete pod "$POD" --ignore-not-found --wait=true >/dev/null
  t0=$EPOCHREALTIME
  "$KUBECTL" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $POD
  namespace: default
  labels: {app: $POD}
  annotations:
    k8s.v1.cni.cncf.io/networks: '[{"name":"$NAD_NAME","namespace":"$NAD_NS","interface":"net1","ips":["$NET1_IP/24"]}]'
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - {name: testapp, image: docker.io/local/vpcnet-testapp:latest, imagePullPolicy: Never}
YAML
  "$KUBECTL" -n default wait --for=condition=Ready "pod/$POD" --timeout=60s >/dev/null ||
    fail "pod default/$POD not Ready in 60s"
  t_run=$(ms_since "$t0")
  uid=$("$KUBECTL" -n default get pod "$POD" -o jsonpath='{.metadata.uid}')
  ip_eth0=$("$KUBECTL" -n default exec "$POD" -- ip -4 -o addr show dev eth0 | awk '{print $4}')
  ip_net1=$("$KUBECTL" -n default exec "$POD" -- ip -4 -o addr show dev net1 | awk '{print $4}')
  [[ "$ip_eth0" == 10.16.* ]] || fail "eth0 has '$ip_eth0', not an address of 10.16.0.0/16"
  [[ "$ip_net1" == "$NET1_IP/24" ]] || fail "net1 has '$ip_net1', not $NET1_IP/24"
  status=$("$KUBECTL" -n default get pod "$POD" -o jsonpath='{.metadata.annotations.k8s\.v1\.cni\.cncf\.io/network-status}' | tr -d '\n ')
  [[ "$status" == *"\"$NET1_IP\""* && "$status" == *'"interface":"net1"'* ]] ||
    fail "network-status annotation lacks net1 $NET1_IP: $status"
  local t1=$EPOCHREALTIME
  body=$("$KUBECTL" -n default exec "$POD" -- curl -sS -m 5 "http://$EXT_HOST_IP/") || fail "curl http://$EXT_HOST_IP/ from the pod failed"
  t_curl=$(ms_since "$t1")
  [[ "$body" == "client=$NET1_IP:"*" server=external" ]] || fail "unexpected answer: $body"
  grep -qxF "${body% server=external}" "$BOX/ext/access.log" ||
    fail "the external host's log lacks ${body% server=external}"
  local t2=$EPOCHREALTIME
  "$KUBECTL" -n default delete pod "$POD" --wait=true --timeout=60s >/dev/null || fail "pod deletion timed out"
  local t_del
  t_del=$(ms_since "$t2")
  # The sandbox's teardown (CNI DEL) may finish just after the API object goes.
  local left deadline=$((SECONDS + 15))
  while left=$(node_leftovers) && [[ -n "$left" ]]; do
    ((SECONDS < deadline)) || fail "left on the node after deletion: $left"
    sleep 0.2
  done
  # Logged as <ns>:<pod>:<uid>:<network>:<ifname>; the uid is unknownUID when
  # the pod object was already gone at DEL time.
  node_exec grep -qE "Del: default:$POD:($uid|unknownUID):$NAD_NAME:net1 " /var/log/multus.log ||
    fail "no Multus DEL of net1 for pod uid $uid in /var/log/multus.log"
  log "round $n: Running+Ready ${t_run}s (eth0 $ip_eth0, net1 $ip_net1); curl ${t_curl}s -> '$body'; delete ${t_del}s; net1 cleaned up"
}

for ((r = 1; r <= ROUNDS; r++)); do round "$r"; done
log "PASS: Multus default network (vpcnet) + macvlan/static leg on the external network"
