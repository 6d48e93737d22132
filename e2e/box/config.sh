# The product's manifests, applied the way a user would (sourced by up.sh;
# needs lib.sh): `kubectl apply -k config/box`, then wait for the CNI
# DaemonSet (which the operator creates once it leads) and the operator, then
# a smoke pod.
# shellcheck shell=bash

CONFIG_DIR="${VPCNET_BOX_CONFIG:-$REPO/config/box}"
CNI_CONFLIST=/etc/cni/net.d/10-vpcnet.conflist
SMOKE_POD=box-smoke
DEFAULT_CIDR_PREFIX=10.16.

# image_imported NAME: the node's containerd has docker.io/local/NAME:latest.
# Not `grep -q`: it exits at the first match, ctr then dies of SIGPIPE on the
# rest of the list, and with pipefail a present image reads as missing (seen
# as an intermittent "images missing" in CI). Pipes into grep in the box
# scripts therefore let grep read to the end.
image_imported() {
  node_exec ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q |
    grep -x "docker.io/local/$1:latest" >/dev/null
}

node_ready() {
  [[ "$("$KUBECTL" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

# pod_running_ip NS NAME: the pod's VPC address once it is Running (its
# annotation: status.podIP is its probe address).
pod_running_ip() {
  local out
  out=$("$KUBECTL" -n "$1" get pod "$2" -o jsonpath='{.status.phase} {.metadata.annotations.vpcnet\.io/ip_address}') || return 1
  [[ "$out" == "Running "* && -n "${out#Running }" ]] && echo "${out#Running }"
}

config_up() {
  local img n
  for n in $(node_indexes); do
    use_node "$n"
    for img in vpcnet-operator vpcnet-cni; do
      image_imported "$img" || die "image docker.io/local/$img:latest is not in $NODE_NAME's containerd after the import"
    done
  done
  use_node 1
  "$KUBECTL" apply --server-side --field-manager=vpcnet-box -k "$CONFIG_DIR" >/dev/null
  wait_for "the operator to create the vpcnet-cni DaemonSet" 90 "kubelet$NODE_SUFFIX" \
    "$KUBECTL" -n vpcnet-system get daemonset vpcnet-cni
  "$KUBECTL" -n vpcnet-system rollout status daemonset/vpcnet-cni --timeout=60s >/dev/null ||
    die "the vpcnet-cni DaemonSet did not become ready"
  for n in $(node_indexes); do
    use_node "$n"
    wait_for "$CNI_CONFLIST in $NODE_NAME" 30 "kubelet$NODE_SUFFIX" node_exec test -s "$CNI_CONFLIST"
  done
  log "vpcnet-cni DaemonSet installed the plugin and $CNI_CONFLIST on every node"
  "$KUBECTL" -n vpcnet-system wait --for=condition=Available deployment/vpcnet-operator --timeout=90s >/dev/null ||
    die "the vpcnet-operator Deployment did not become Available"
  for n in $(node_indexes); do
    use_node "$n"
    wait_for "node $NODE_NAME Ready" 30 "kubelet$NODE_SUFFIX" node_ready
  done
  use_node 1
  smoke_pod
}

# smoke_pod: a testapp pod in default gets Running with an address from the
# default subnet; removed again.
smoke_pod() {
  image_imported vpcnet-testapp || return 0
  "$KUBECTL" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $SMOKE_POD, namespace: default, labels: {app: $SMOKE_POD}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - {name: testapp, image: docker.io/local/vpcnet-testapp:latest, imagePullPolicy: Never}
YAML
  local ip
  wait_for "pod default/$SMOKE_POD Running" 60 "" pod_running_ip default "$SMOKE_POD"
  ip=$(pod_running_ip default "$SMOKE_POD")
  [[ "$ip" == "$DEFAULT_CIDR_PREFIX"* ]] || die "pod default/$SMOKE_POD got $ip, not an address of 10.16.0.0/16"
  log "pod default/$SMOKE_POD Running with $ip"
  "$KUBECTL" -n default delete pod "$SMOKE_POD" --wait=false >/dev/null
}
