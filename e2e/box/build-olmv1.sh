#!/usr/bin/env bash
# Builds OLM v1 (github.com/operator-framework/operator-controller's
# catalogd and operator-controller) and a loopback OCI registry with its
# client (github.com/google/go-containerregistry's registry and crane) into
# ~/.cache/vpcnet/olmv1-<version>/bin, once, and copies OLM v1's CRDs from
# its module into .../crds. For `cargo xtask olm-e2e` only: CI does not run it.
#
# config/olm/olmv1/go.mod and config/olm/registry/go.mod name the tools and,
# with their go.sum, pin every dependency. Two modules, because minimal version
# selection over both would lift operator-controller's docker libraries past
# what its oras-go dependency compiles against. Like build-opm.sh: built to
# temporary names and renamed, the stamp file (the recipe and a hash of both
# go.mod and go.sum) written last, concurrent invocations wait on a lock.
# Prints the cache directory.
#
# With --check it only prints the directory, or fails naming this script.
#
# Env: VPCNET_CACHE (default ~/.cache/vpcnet)
set -euo pipefail
OLM_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../config/olm/olmv1" && pwd)"
REG_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../config/olm/registry" && pwd)"
version_of() { awk -v m="$1" '$1 == m { print $2 }' "$2" | head -n1; }
OLM_VERSION="$(version_of github.com/operator-framework/operator-controller "$OLM_SRC/go.mod")"
REG_VERSION="$(version_of github.com/google/go-containerregistry "$REG_SRC/go.mod")"
if [[ -z "$OLM_VERSION" || -z "$REG_VERSION" ]]; then
  echo "build-olmv1: config/olm/{olmv1,registry}/go.mod must require operator-controller and go-containerregistry" >&2
  exit 1
fi
TAGS=containers_image_openpgp
CACHE="${VPCNET_CACHE:-$HOME/.cache/vpcnet}/olmv1-${OLM_VERSION}"
BIN="$CACHE/bin"
STAMP="$CACHE/.complete"
WANT="recipe 1: operator-controller@$OLM_VERSION go-containerregistry@$REG_VERSION tags $TAGS $(cat "$OLM_SRC/go.mod" "$OLM_SRC/go.sum" "$REG_SRC/go.mod" "$REG_SRC/go.sum" | sha256sum | cut -c1-16)"
TOOLS=(catalogd operator-controller registry crane)

complete() {
  [[ -f "$STAMP" && "$(<"$STAMP")" == "$WANT" ]] || return 1
  local t
  for t in "${TOOLS[@]}"; do [[ -x "$BIN/$t" ]] || return 1; done
  [[ -f "$CACHE/crds/clustercatalogs.yaml" && -f "$CACHE/crds/clusterextensions.yaml" ]]
}
if complete; then echo "$CACHE"; exit 0; fi
if [[ "${1:-}" == --check ]]; then
  echo "OLM v1 is not built for this source (or is stale): run bash e2e/box/build-olmv1.sh" >&2
  exit 1
fi

mkdir -p "$CACHE/src/olmv1" "$CACHE/src/registry" "$BIN" "$CACHE/crds"
exec 9>"$CACHE.lock"
flock 9
if complete; then echo "$CACHE"; exit 0; fi # another invocation finished it

if ! command -v go >/dev/null; then
  if [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  else
    echo "build-olmv1: a Go toolchain (go) is required to build OLM v1" >&2
    exit 1
  fi
fi
export GOFLAGS=-mod=readonly GOTOOLCHAIN=local

echo "build-olmv1: building registry and crane $REG_VERSION into $BIN" >&2
cd "$CACHE/src/registry"
cp "$REG_SRC/go.mod" "$REG_SRC/go.sum" .
go mod download
for t in registry crane; do
  nice -n 19 go build -trimpath -ldflags "-s -w" -o "$BIN/.$t.tmp" "github.com/google/go-containerregistry/cmd/$t"
  mv "$BIN/.$t.tmp" "$BIN/$t"
done

echo "build-olmv1: building catalogd and operator-controller $OLM_VERSION into $BIN (once; ~10 min)" >&2
cd "$CACHE/src/olmv1"
cp "$OLM_SRC/go.mod" "$OLM_SRC/go.sum" .
echo "build-olmv1: downloading modules" >&2
go mod download
for t in catalogd operator-controller; do
  echo "build-olmv1: compiling $t" >&2
  nice -n 19 go build -trimpath -tags "$TAGS" -ldflags "-s -w" -o "$BIN/.$t.tmp" \
    "github.com/operator-framework/operator-controller/cmd/$t"
  mv "$BIN/.$t.tmp" "$BIN/$t"
done
mod="$(go list -m -f '{{.Dir}}' github.com/operator-framework/operator-controller)"
cp "$mod/config/base/catalogd/crd/bases/olm.operatorframework.io_clustercatalogs.yaml" "$CACHE/crds/clustercatalogs.yaml"
cp "$mod/config/base/operator-controller/crd/bases/olm.operatorframework.io_clusterextensions.yaml" "$CACHE/crds/clusterextensions.yaml"
chmod u+w "$CACHE/crds/"*.yaml
echo "$WANT" >"$STAMP"
echo "build-olmv1: done" >&2
echo "$CACHE"
