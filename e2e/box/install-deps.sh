#!/usr/bin/env bash
# Installs the Debian packages the cluster-in-a-box needs, only if some are missing.
# Idempotent; takes well under a second when everything is already there.
set -euo pipefail
PACKAGES=(
  openvswitch-switch ovn-central ovn-host          # OVN + OVS daemons and tools
  iptables iproute2 ethtool iputils-ping curl conntrack arping
  containernetworking-plugins                      # macvlan/static for NAD legs
  containerd runc                                  # the node's container runtime
  buildah debootstrap umoci                        # images without a registry
  openssl
  shellcheck                                       # lints every script (cargo xtask test)
  bind9-dnsutils                                   # dig: the DNS server's tests query it for real
  dnsperf                                          # the DNS server's benchmark (cargo bench -p vpcnet-dns)
  dnsmasq-base                                     # the external host's resolver (the VPCs' DNS upstream)
)
missing=()
for p in "${PACKAGES[@]}"; do
  # dpkg -s succeeds for removed-but-configured packages too; require "installed".
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -x installed >/dev/null; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: must run as root to install packages" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Go toolchain (for build-k8s.sh) is not a Debian package; build-k8s.sh checks it.
