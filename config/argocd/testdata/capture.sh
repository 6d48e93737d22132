#!/usr/bin/env bash
# Captures config/argocd/testdata/<Kind>/<state>.yaml from real objects on the
# running cluster-in-a-box: one tenant (namespace, VPC, subnet, NAT gateway,
# pods, EIPs, rules, Vips, load balancers) plus objects the operator refuses,
# every change of every object recorded by a watch per kind, then one
# recorded version per kind and state written out. Deletes what it created
# (the shared external subnet of config/samples stays, as the e2e suites
# leave it). Needs jq and yq (python yq); takes the box lock itself.
#
# Usage: bash config/argocd/testdata/capture.sh   (then review the diff and
# config/argocd/health_test.yaml: cargo test -p xtask argocd says what moved)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/../../.."
BOX="${VPCNET_BOX_DIR:-/tmp/vpcnet-box}"
K=("$BOX/bin/kubectl" --kubeconfig "$BOX/kubeconfig")
T=argocd-td
WORK="$(mktemp -d)"
KINDS=(vpc subnet vpcnatgateway iptableseip iptablessnatrule iptablesdnatrule iptablesfiprule vip switchlbrule securitygroup vpcdns)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "${K[@]}" delete namespace "$T" --ignore-not-found --wait=true --timeout=120s >/dev/null || true
  "${K[@]}" delete vpcdns "$T" --ignore-not-found >/dev/null || true
  "${K[@]}" delete vpcnatgateway "$T" "$T-bad" --ignore-not-found --wait=true --timeout=120s >/dev/null || true
  "${K[@]}" delete subnet "$T" "$T-overlap" --ignore-not-found --wait=true --timeout=60s >/dev/null || true
  "${K[@]}" delete vpc "$T" "$T-dup" --ignore-not-found --wait=true --timeout=60s >/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

exec 9>/tmp/vpcnet-box.lock
flock 9

"${K[@]}" create namespace "$T"
for kind in "${KINDS[@]}"; do
  "${K[@]}" get "$kind" -A -w -o json >"$WORK/$kind.json" 2>/dev/null &
  pids+=($!)
done
sleep 1

apply() { "${K[@]}" apply -f - >/dev/null; }
apply <<YAML
apiVersion: vpcnet.io/v1
kind: Vpc
metadata: {name: $T}
spec: {namespaces: [$T]}
---
apiVersion: vpcnet.io/v1
kind: Subnet
metadata: {name: $T}
spec: {vpc: $T, cidrBlock: 10.0.1.0/24, gateway: 10.0.1.1, protocol: IPv4, namespaces: [$T]}
YAML
"${K[@]}" apply -f "$ROOT/config/samples/03-external-subnet.yaml" >/dev/null
apply <<YAML
apiVersion: vpcnet.io/v1
kind: VpcNatGateway
metadata: {name: $T}
spec: {vpc: $T, subnet: $T, lanIp: 10.0.1.254, externalSubnets: [ovn-vpc-external-network]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: $T, labels: {app: web}, annotations: {vpcnet.io/ip_address: 10.0.1.2}}
spec: {terminationGracePeriodSeconds: 1, containers: [{name: app, image: docker.io/local/vpcnet-testapp:latest, imagePullPolicy: Never}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: $T, annotations: {vpcnet.io/ip_address: 10.0.1.3}}
spec: {terminationGracePeriodSeconds: 1, containers: [{name: app, image: docker.io/local/vpcnet-testapp:latest, imagePullPolicy: Never}]}
---
apiVersion: vpcnet.io/v1
kind: Vip
metadata: {name: web-vip, namespace: $T}
spec: {subnet: $T, v4ip: 10.0.1.100}
---
apiVersion: vpcnet.io/v1
kind: Vip
metadata: {name: idle-vip, namespace: $T}
spec: {subnet: $T, v4ip: 10.0.1.101}
---
apiVersion: vpcnet.io/v1
kind: SwitchLBRule
metadata: {name: web, namespace: $T}
spec: {vip: 10.0.1.100, selector: ["app: web"], sessionAffinity: ClientIP, ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]}
---
apiVersion: vpcnet.io/v1
kind: SwitchLBRule
metadata: {name: idle, namespace: $T}
spec: {vip: 10.0.1.101, selector: ["app: nobody"], ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: vpcnet.io/v1
kind: IptablesEIP
metadata: {name: eips01, namespace: $T}
spec: {natGwDp: $T}
---
apiVersion: vpcnet.io/v1
kind: IptablesEIP
metadata: {name: eipd01, namespace: $T}
spec: {natGwDp: $T}
---
apiVersion: vpcnet.io/v1
kind: IptablesEIP
metadata: {name: eipf01, namespace: $T}
spec: {natGwDp: $T}
---
apiVersion: vpcnet.io/v1
kind: IptablesSnatRule
metadata: {name: snat01, namespace: $T}
spec: {eip: eips01, internalCIDR: 10.0.1.0/24}
---
apiVersion: vpcnet.io/v1
kind: IptablesDnatRule
metadata: {name: dnat01, namespace: $T}
spec: {eip: eipd01, externalPort: "8888", internalIp: 10.0.1.2, internalPort: "8080", protocol: tcp}
---
apiVersion: vpcnet.io/v1
kind: IptablesFIPRule
metadata: {name: fip01, namespace: $T}
spec: {eip: eipf01, internalIp: 10.0.1.3}
YAML
"${K[@]}" wait --for=condition=Ready --timeout=180s "vpcnatgateway/$T"
"${K[@]}" wait -n "$T" --for=condition=Ready --timeout=120s \
  iptableseip/eips01 iptableseip/eipd01 iptableseip/eipf01 \
  iptablessnatrule/snat01 iptablesdnatrule/dnat01 iptablesfiprule/fip01 \
  vip/web-vip switchlbrule/web

# What the operator refuses (and what waits), next to what works.
taken=$("${K[@]}" get iptableseip -n "$T" eips01 -o jsonpath='{.status.ip}')
apply <<YAML
apiVersion: vpcnet.io/v1
kind: Vpc
metadata: {name: $T-dup}
spec:
  staticRoutes:
  - {cidr: 192.168.0.0/16, nextHopIP: 10.0.1.10}
  - {cidr: 192.168.0.0/16, nextHopIP: 10.0.1.11}
---
apiVersion: vpcnet.io/v1
kind: Subnet
metadata: {name: $T-overlap}
spec: {vpc: $T, cidrBlock: 10.0.1.128/25}
---
apiVersion: vpcnet.io/v1
kind: VpcNatGateway
metadata: {name: $T-bad}
spec: {vpc: $T, subnet: $T, lanIp: 10.0.1.0, externalSubnets: [ovn-vpc-external-network]}
---
apiVersion: vpcnet.io/v1
kind: IptablesEIP
metadata: {name: eip-taken, namespace: $T}
spec: {natGwDp: $T, v4ip: "$taken"}
---
apiVersion: vpcnet.io/v1
kind: IptablesSnatRule
metadata: {name: snat-noeip, namespace: $T}
spec: {eip: missing, internalCIDR: 10.0.1.0/24}
---
apiVersion: vpcnet.io/v1
kind: IptablesDnatRule
metadata: {name: dnat-outside, namespace: $T}
spec: {eip: eipd01, externalPort: "9000", internalIp: 10.0.9.5, protocol: tcp}
---
apiVersion: vpcnet.io/v1
kind: IptablesFIPRule
metadata: {name: fip-conflict, namespace: $T}
spec: {eip: eipd01, internalIp: 10.0.1.3}
---
apiVersion: vpcnet.io/v1
kind: Vip
metadata: {name: vip-out, namespace: $T}
spec: {subnet: $T, v4ip: 10.0.2.5}
---
apiVersion: vpcnet.io/v1
kind: SwitchLBRule
metadata: {name: unreserved, namespace: $T}
spec: {vip: 10.0.1.150, endpoints: [10.0.1.2], ports: [{name: http, port: 80, targetPort: 8080}]}
YAML
# The sample's group names a remote group sg2 that does not exist.
sed -e "s/namespace: sukai263/namespace: $T/" "$ROOT/config/samples/11-security-group.yaml" | apply
sed -e "s/name: mail263-dns/name: $T/" -e "s/vpc: mail263/vpc: $T/" -e "s/subnet: vmservers/subnet: $T/" \
  "$ROOT/config/samples/12-vpc-dns.yaml" | apply
# A spec change the status has not caught up with yet (the watch sees it).
"${K[@]}" patch vpc "$T" --type=merge -p "{\"spec\":{\"namespaces\":[\"$T\",\"$T-b\"]}}" >/dev/null
"${K[@]}" patch subnet "$T" --type=merge -p '{"spec":{"excludeIps":["10.0.1.200"]}}' >/dev/null
sleep 5
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
pids=()

# save KIND FILE-KIND STATE NAME JQ-CONDITION: the first recorded version of
# NAME matching the condition (`last` picks the last version instead).
save() {
  local kind=$1 dir=$2 state=$3 name=$4 cond=$5 pick=${6:-first}
  mkdir -p "$HERE/$dir"
  jq -s --arg n "$name" "[.[] | select(.metadata.name == \$n) | select($cond)] | $pick" "$WORK/$kind.json" |
    jq 'del(.metadata.managedFields)' >"$WORK/one.json"
  if [[ "$(jq -r 'type' "$WORK/one.json")" != object ]]; then
    echo "capture: no recorded $kind/$name is $state ($cond)" >&2
    return 1
  fi
  yq -y . "$WORK/one.json" >"$HERE/$dir/$state.yaml"
  echo "$dir/$state.yaml: $kind/$name"
}
ready='(.status.conditions // [] | map(select(.type == "Ready")) | .[0])'
behind='(.status.observedGeneration // 0) < .metadata.generation'
save vpc Vpc healthy "$T" "$ready.status == \"True\" and (($behind) | not)"
save vpc Vpc progressing "$T" "$behind and .status != null"
save vpc Vpc degraded "$T-dup" "$ready.status == \"False\"" last
save subnet Subnet healthy "$T" "$ready.status == \"True\" and (($behind) | not)"
save subnet Subnet progressing "$T" "$behind and .status != null"
save subnet Subnet degraded "$T-overlap" "$ready.status == \"False\"" last
save vpcnatgateway VpcNatGateway healthy "$T" "$ready.status == \"True\"" last
save vpcnatgateway VpcNatGateway progressing "$T" "$ready.reason == \"PodNotReady\""
save vpcnatgateway VpcNatGateway degraded "$T-bad" "$ready.status == \"False\"" last
save iptableseip IptablesEIP healthy eips01 "$ready.status == \"True\"" last
save iptableseip IptablesEIP progressing eips01 "$ready.status == \"False\""
save iptableseip IptablesEIP degraded eip-taken "$ready.status == \"False\"" last
for kind in IptablesSnatRule:snat01:snat-noeip IptablesDnatRule:dnat01:dnat-outside IptablesFIPRule:fip01:fip-conflict; do
  IFS=: read -r k ok bad <<<"$kind"
  lower=$(tr '[:upper:]' '[:lower:]' <<<"$k")
  save "$lower" "$k" healthy "$ok" "$ready.status == \"True\"" last
  save "$lower" "$k" progressing "$ok" "$ready.status == \"False\""
  save "$lower" "$k" degraded "$bad" "$ready.status == \"False\"" last
done
save vip Vip healthy web-vip "$ready.status == \"True\"" last
save vip Vip progressing web-vip '.status == null'
save vip Vip degraded vip-out "$ready.status == \"False\"" last
save switchlbrule SwitchLBRule healthy web "$ready.status == \"True\"" last
save switchlbrule SwitchLBRule progressing idle "$ready.reason == \"NoBackends\"" last
save switchlbrule SwitchLBRule degraded unreserved "$ready.status == \"False\"" last
save securitygroup SecurityGroup progressing sg1 '.status == null'
# SecurityGroups are served by an operator build that has the security
# service; without one the previous degraded.yaml stays.
save securitygroup SecurityGroup degraded sg1 "$ready.status == \"False\"" last ||
  echo "capture: kept the previous SecurityGroup/degraded.yaml" >&2
save vpcdns VpcDns progressing "$T" 'true' last
