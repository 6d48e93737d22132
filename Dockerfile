# vpcnet images, one target per component:
#
#   cargo build --release            # first: the targets copy target/release/*
#   docker build --target operator -t vpcnet-operator .
#   (likewise --target cni | natgw | dns)
#
# The stages take prebuilt release binaries so the same file builds offline
# (no Rust toolchain image needed); BASE may point at any Debian 12 image, e.g.
# the cluster-in-a-box builds with --build-arg BASE=localhost/debian:bookworm-slim.
# The binaries link glibc dynamically: build them on Debian 12 (bookworm) or
# older so the base image's glibc is new enough.
ARG BASE=debian:bookworm-slim

# Operator: reconciles Vpcs, Subnets and Pods into OVN Northbound.
FROM ${BASE} AS operator
COPY target/release/vpcnet-operator /usr/local/bin/vpcnet-operator
ENTRYPOINT ["/usr/local/bin/vpcnet-operator"]

# CNI plugin: the binary plus the installer the DaemonSet runs to copy it and
# its configuration into the node's /opt/cni/bin and /etc/cni/net.d; and the
# per-node agent the same DaemonSet runs (vpcnet-node).
FROM ${BASE} AS cni
COPY target/release/vpcnet-cni /opt/vpcnet/bin/vpcnet-cni
COPY target/release/vpcnet-node /opt/vpcnet/bin/vpcnet-node
COPY config/cni/install-cni.sh /opt/vpcnet/bin/install-cni.sh
ENTRYPOINT ["/opt/vpcnet/bin/install-cni.sh"]

# NAT gateway agent: iptables (nft and legacy), conntrack, conntrackd (two
# replicas sync connection state), arping, ip.
FROM ${BASE} AS natgw
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends iptables conntrack conntrackd arping iproute2 >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY target/release/vpcnet-natgw /usr/local/bin/vpcnet-natgw
ENTRYPOINT ["/usr/local/bin/vpcnet-natgw"]

# Tenant DNS server.
FROM ${BASE} AS dns
COPY target/release/vpcnet-dns /usr/local/bin/vpcnet-dns
ENTRYPOINT ["/usr/local/bin/vpcnet-dns"]

