# The nodes (sourced by up.sh and down.sh; needs lib.sh): per node, one
# long-lived holder process owns a private mount namespace inside the node's
# network namespace; its containerd, kubelet and OVS daemons run in both
# (nsenter -t <holder> -m -n). Every function works on the node use_node
# (lib.sh) chose last.
# tmpfs over the fixed paths kubelet/containerd/CNI write to keeps the host clean.
# shellcheck shell=bash

# Cgroups of pods (cgroupfs driver) live below this root, one group per node
# (two kubelets must not share a cgroupRoot), so down can remove them.
CGROUP_ROOT=vpcnet-box
NODE_TMPFS=(/var/lib/kubelet /var/lib/containerd /var/lib/cni /run/containerd /run/netns
  /var/log /etc/cni /opt/cni)
# node_binds: host dir -> path inside the node (bind mounts): the node's own
# Open_vSwitch db and ctl sockets, and OVN central's sockets (one central).
node_binds() {
  NODE_BINDS=(["$OVS_DIR"]=/run/openvswitch ["$BOX/ovn"]=/run/ovn)
}
# Kernel settings kubelet insists on (vm.overcommit_memory=1, kernel.panic=10,
# kernel.panic_on_oops=1) are global, not per namespace: inside the node they
# are files with the expected values, so kubelet neither writes nor fails.
declare -A NODE_SYSCTLS=([vm/overcommit_memory]=1 [vm/panic_on_oom]=0 [kernel/panic]=10
  [kernel/panic_on_oops]=1 [kernel/keys/root_maxkeys]=1000000 [kernel/keys/root_maxbytes]=25000000)

node_mounts() {
  local d
  declare -A NODE_BINDS
  node_binds
  for d in "${NODE_TMPFS[@]}" "${NODE_BINDS[@]}"; do record_created_dir "$d"; done
  for d in "${NODE_TMPFS[@]}"; do node_exec mount -t tmpfs -o mode=755 "vpcnet-box" "$d"; done
  for d in "${!NODE_BINDS[@]}"; do mkdir -p "$d"; node_exec mount --bind "$d" "${NODE_BINDS[$d]}"; done
  mkdir -p "$NODE_DIR/sysctl"
  for d in "${!NODE_SYSCTLS[@]}"; do
    echo "${NODE_SYSCTLS[$d]}" >"$NODE_DIR/sysctl/${d//\//.}"
    node_exec mount --bind "$NODE_DIR/sysctl/${d//\//.}" "/proc/sys/$d"
  done
  node_exec mkdir -p /etc/cni/net.d /opt/cni/bin /var/log/pods /var/log/containers
  # The reference plugins, where a node has them: containerd's CRI runs
  # `loopback` from /opt/cni/bin for every sandbox; macvlan/static serve NAD legs.
  node_exec cp -a /usr/lib/cni/. /opt/cni/bin/
}

# node_holder_up: the namespaces' holder: `tail -f` on a file of this box (its
# command line names the box, which down.sh checks before signalling it).
node_holder_up() {
  mkdir -p "$NODE_DIR"
  : >"$NODE_DIR/holder"
  start_daemon "node-holder$NODE_SUFFIX" /usr/bin/tail --wrap netns -- -f "$NODE_DIR/holder"
  wait_for "the namespace holder of $NODE_NAME" 5 "node-holder$NODE_SUFFIX" node_exec true
  node_mounts
}

# node_cgroups_up: CGROUP_ROOT/NODE_NAME in every cgroup v1 hierarchy
# (kubelet requires its root to exist); cpuset needs its cpus/mems filled in
# from the parent at each level.
node_cgroups_up() {
  local dir sub
  while read -r dir; do
    for sub in "$CGROUP_ROOT" "$CGROUP_ROOT/$NODE_NAME"; do
      mkdir -p "$dir/$sub"
      if [[ -f "$dir/cpuset.cpus" ]]; then
        cat "$(dirname "$dir/$sub")/cpuset.cpus" >"$dir/$sub/cpuset.cpus"
        cat "$(dirname "$dir/$sub")/cpuset.mems" >"$dir/$sub/cpuset.mems"
      fi
    done
  done < <(awk '$3 == "cgroup" {print $2}' /proc/mounts)
}

containerd_config() {
  cat >"$NODE_DIR/containerd.toml" <<EOF
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/local/vpcnet-pause:latest"
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
EOF
}

containerd_up() {
  containerd_config
  start_daemon "containerd$NODE_SUFFIX" /usr/bin/containerd --wrap node -- --config "$NODE_DIR/containerd.toml" --log-level warn
  wait_for "containerd of $NODE_NAME" 20 "containerd$NODE_SUFFIX" node_exec ctr --address "$CONTAINERD_SOCK" version
}

kubelet_config() {
  local client='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n'
  sign "kubelet-client-$NODE_NAME" "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
  # NODE_IP is box.env's (through lib.sh), not a misspelt NODE_DIR.
  # shellcheck disable=SC2153
  sign "kubelet-serving-$NODE_NAME" "/O=system:nodes/CN=system:node:$NODE_NAME" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:$NODE_NAME,IP:$NODE_IP\n"
  write_kubeconfig "$NODE_DIR/kubelet.kubeconfig" "kubelet-client-$NODE_NAME"
  cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving-$NODE_NAME.crt
tlsPrivateKeyFile: $PKI/kubelet-serving-$NODE_NAME.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT/$NODE_NAME
failCgroupV1: false
failSwapOn: false
# Room for the 200-pod start-up benchmark (the default is 110).
maxPods: 250
protectKernelDefaults: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "0%", nodefs.available: "0%", imagefs.available: "0%"}
clusterDomain: $CLUSTER_DNS_DOMAIN
clusterDNS: [$CLUSTER_DNS_IP]
resolvConf: /etc/resolv.conf
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
nodeLeaseDurationSeconds: ${VPCNET_BOX_NODE_LEASE_SECONDS:-40}
syncFrequency: 10s
# A crashed container restarts within a second every time (by default the
# wait doubles up to 5 minutes): the NAT gateway failover suite kills the
# active agent again and again.
featureGates: {KubeletCrashLoopBackOffMax: true}
crashLoopBackOff: {maxContainerRestartPeriod: 1s}
fileCheckFrequency: 10s
EOF
}

# kubelet_cgroup PID: moves the kubelet into its own cgroup v2 group, the only
# one the CNI's probe path lets open connections into pods.
kubelet_cgroup() {
  local root
  root=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
  [[ -n "$root" ]] || die "no cgroup2 hierarchy is mounted: the kubelet's probe path needs one"
  mkdir -p "$root/$KUBELET_CGROUP"
  echo "$1" >"$root/$KUBELET_CGROUP/cgroup.procs"
}

kubelet_up() {
  kubelet_config
  node_cgroups_up
  start_daemon "kubelet$NODE_SUFFIX" "$K8S_BIN/kubelet" --wrap node -- \
    --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
  kubelet_cgroup "$(cat "$BOX/pids/kubelet$NODE_SUFFIX.pid")"
  wait_for "node $NODE_NAME registered" 60 "kubelet$NODE_SUFFIX" api "/api/v1/nodes/$NODE_NAME"
}

# ---------------------------------------------------------------- teardown

# node_procs: PIDs (not ours) in the node's network or mount namespace, or in a
# cgroup below CGROUP_ROOT: shims, pods' processes, leftovers of a crashed up.
node_procs() {
  local holder=$1 netns_ino="" mnt_ino="" pid
  [[ -n "$holder" ]] && mnt_ino=$(readlink "/proc/$holder/ns/mnt" 2>/dev/null || true)
  [[ -e "/run/netns/$NODE_NETNS" ]] && netns_ino="net:[$(stat -L -c %i "/run/netns/$NODE_NETNS")]"
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if [[ -n "$netns_ino" && "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" == "$netns_ino" ]] ||
      [[ -n "$mnt_ino" && "$(readlink "/proc/$pid/ns/mnt" 2>/dev/null)" == "$mnt_ino" ]] ||
      grep -q ":/$CGROUP_ROOT/" "/proc/$pid/cgroup" 2>/dev/null; then
      echo "$pid"
    fi
  done
}

# node_kill_rest HOLDER_PID: TERM, up to 3 s, then KILL whatever node_procs
# finds (containerd shims do not exit on TERM).
node_kill_rest() {
  local holder=$1 pids p sig
  for sig in TERM KILL; do
    mapfile -t pids < <(node_procs "$holder")
    ((${#pids[@]})) || return 0
    kill -"$sig" "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + 3)) alive=1
    while ((alive && SECONDS < deadline)); do
      alive=0
      for p in "${pids[@]}"; do proc_alive "$p" && alive=1 && break; done
      ((alive)) && sleep 0.1
    done
  done
  for p in $(node_procs "$holder"); do proc_alive "$p" && log "node process $p survived SIGKILL"; done
  return 0
}

# node_cgroups_down: removes the pods' cgroups (deepest first) in every hierarchy.
node_cgroups_down() {
  local root
  for root in /sys/fs/cgroup/*/"$CGROUP_ROOT" /sys/fs/cgroup/"$CGROUP_ROOT"; do
    [[ -d "$root" ]] || continue
    find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "$root" ]] && log "could not remove cgroup $root"
  done
  return 0
}

# node_dirs_down: the host directories created as mount points, if still empty.
node_dirs_down() {
  [[ -f "$BOX/created-dirs" ]] || return 0
  local d
  while read -r d; do rmdir "$d" 2>/dev/null || true; done < <(sort -ru "$BOX/created-dirs")
}
