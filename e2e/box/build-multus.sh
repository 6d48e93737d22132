#!/usr/bin/env bash
# Builds the Multus thin plugin (`multus`, cmd/multus of the multus-cni v4 Go
# module) into ~/.cache/vpcnet/multus-<version>/bin/multus, once. Like
# build-k8s.sh: a wrapper module requires the published module, the binary is
# built to a temporary name and renamed, the stamp file is written last, and
# concurrent invocations wait on a lock. Prints the binary's path.
#
# Env: MULTUS_VERSION (default v4.2.4), VPCNET_CACHE (default ~/.cache/vpcnet)
set -euo pipefail
MULTUS_VERSION="${MULTUS_VERSION:-v4.2.4}"
MULTUS_MODULE=gopkg.in/k8snetworkplumbingwg/multus-cni.v4
CACHE="${VPCNET_CACHE:-$HOME/.cache/vpcnet}/multus-${MULTUS_VERSION}"
BIN="$CACHE/bin"
STAMP="$CACHE/.complete"
# Bump the recipe when the way the binary is built changes.
WANT="recipe 1: $MULTUS_MODULE@$MULTUS_VERSION cmd/multus"

complete() { [[ -f "$STAMP" && "$(<"$STAMP")" == "$WANT" && -x "$BIN/multus" ]]; }
if complete; then echo "$BIN/multus"; exit 0; fi

mkdir -p "$CACHE/src" "$BIN"
exec 9>"$CACHE.lock"
flock 9
if complete; then echo "$BIN/multus"; exit 0; fi   # another invocation finished it

if ! command -v go >/dev/null; then
  if [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  else
    echo "build-multus: a Go toolchain (go) is required to build Multus $MULTUS_VERSION" >&2
    exit 1
  fi
fi
echo "build-multus: building Multus $MULTUS_VERSION (thin plugin) into $BIN (once)" >&2
cd "$CACHE/src"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
cat > go.mod <<EOF
module vpcnet.io/multus-build

go 1.24.0

require $MULTUS_MODULE $MULTUS_VERSION
EOF
# A blank import keeps the requirement (and its go.sum entries) in place.
cat > tools.go <<EOF
//go:build tools

package tools

import _ "$MULTUS_MODULE/cmd/multus"
EOF
go mod download "$MULTUS_MODULE@$MULTUS_VERSION"
go get "$MULTUS_MODULE@$MULTUS_VERSION"
# Multus' own build stamps these (hack/build-go.sh); `multus -version` shows them.
commit=$(go mod download -json "$MULTUS_MODULE@$MULTUS_VERSION" |
  sed -n 's/.*"Hash": "\([0-9a-f]*\)".*/\1/p' | head -n1)
pkg="$MULTUS_MODULE/pkg/multus"
ldflags="-s -w -X $pkg.version=${MULTUS_VERSION#v} -X $pkg.commit=${commit:-unknown}"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.releaseStatus=released"
go build -trimpath -ldflags "$ldflags" -o "$BIN/.multus.tmp" "$MULTUS_MODULE/cmd/multus"
mv "$BIN/.multus.tmp" "$BIN/multus"
echo "$WANT" > "$STAMP"
echo "$BIN/multus"
