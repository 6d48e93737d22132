#!/usr/bin/env bash
# Builds the pinned Kubernetes control-plane + kubelet + kubectl binaries and etcd
# from their published Go modules into ~/.cache/vpcnet/k8s-<version>/bin, once.
# Each binary is built to a temporary name and renamed, so a running box keeps
# its binaries; the stamp file, written last, names the recipe and what it built.
# Concurrent invocations wait on a lock instead of racing.
set -euo pipefail
# shellcheck source=box.env
source "$(dirname "${BASH_SOURCE[0]}")/box.env"
K8S_VERSION="${K8S_VERSION:-$K8S_VERSION_DEFAULT}"
CACHE="${VPCNET_CACHE:-$HOME/.cache/vpcnet}/k8s-${K8S_VERSION}"
BIN="$CACHE/bin"
STAMP="$CACHE/.complete"
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
# Bump the recipe when the way binaries are built changes: a stamp that differs
# relinks them (cheap with a warm Go build cache).
WANT="recipe 2: etcd ${COMPONENTS[*]}"

complete() { [[ -f "$STAMP" && "$(<"$STAMP")" == "$WANT" ]]; }
complete && exit 0

mkdir -p "$CACHE/src" "$BIN"
exec 9>"$CACHE.lock"
flock 9
complete && exit 0   # another invocation finished it while we waited

if ! command -v go >/dev/null; then
  if [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  else
    echo "build-k8s: a Go toolchain (go) is required to build Kubernetes $K8S_VERSION" >&2
    exit 1
  fi
fi
echo "build-k8s: building Kubernetes $K8S_VERSION into $BIN (once; ~10 min cold)" >&2
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
if [[ ! -x "$BIN/etcd" ]]; then
  echo "building etcd $etcd_version" >&2
  go build -o "$BIN/.etcd.tmp" . && mv "$BIN/.etcd.tmp" "$BIN/etcd"
fi
# Stamp the release into the binaries as Kubernetes' own build does (otherwise
# /version and kubelets report v0.0.0-master and kubectl rejects that).
release_minor="${minor%%.*}"   # 34
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=${K8S_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${release_minor}"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
for c in "${COMPONENTS[@]}"; do
  echo "building $c" >&2
  go build -ldflags "$ldflags" -o "$BIN/.$c.tmp" "k8s.io/kubernetes/cmd/$c"
  mv "$BIN/.$c.tmp" "$BIN/$c"
done
echo "$WANT" > "$STAMP"
