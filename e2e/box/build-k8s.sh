#!/usr/bin/env bash
# Builds the pinned Kubernetes control-plane + kubelet binaries and etcd from their
# published Go modules into ~/.cache/vpcnet/k8s-<version>/bin, once. A stamp file
# written last marks a complete build, so an interrupted build is redone.
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
CACHE="${VPCNET_CACHE:-$HOME/.cache/vpcnet}/k8s-${K8S_VERSION}"
BIN="$CACHE/bin"
STAMP="$CACHE/.complete"
if [[ -f "$STAMP" ]]; then
  exit 0
fi
mkdir -p "$CACHE/src" "$BIN"
cd "$CACHE/src"
minor="${K8S_VERSION#v1.}"   # 34.4
staging="v0.${minor}"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" > dl.json
modfile=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' dl.json)
{
  echo "module vpcnet.io/k8s-build"
  echo
  echo "go 1.24.0"
  echo
  echo "require k8s.io/kubernetes ${K8S_VERSION}"
  echo
  # k8s.io/kubernetes pins its staging modules at v0.0.0 with local replaces;
  # point each at the published release of the same version.
  grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging' "$modfile" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
} > go.mod
cat > etcd.go <<'GO'
// etcd server of the version Kubernetes itself depends on.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
# etcd at exactly the version kubernetes' own go.mod names, so no dependency moves.
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$modfile")
go get "k8s.io/kubernetes@${K8S_VERSION}" "go.etcd.io/etcd/server/v3@${etcd_version}"
go build -o "$BIN/etcd" .
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
  echo "building $c"
  go build -o "$BIN/$c" "k8s.io/kubernetes/cmd/$c"
done
touch "$STAMP"
