#!/usr/bin/env bash
# Builds argocd-lua-health (config/argocd/runner/main.go: Argo CD's health-script
# dialect on gopher-lua) into ~/.cache/vpcnet/gopher-lua-<version>/bin, once.
# Like build-multus.sh: a wrapper module requires the published modules, the
# binary is built to a temporary name and renamed, the stamp file (naming the
# recipe and a hash of the runner's source) is written last, and concurrent
# invocations wait on a lock. Prints the binary's path.
#
# With --check it only prints the binary's path, or fails naming this script.
#
# Env: GOPHER_LUA_VERSION (default v1.1.2), VPCNET_CACHE (default ~/.cache/vpcnet)
set -euo pipefail
GOPHER_LUA_VERSION="${GOPHER_LUA_VERSION:-v1.1.2}"
# What Argo CD's go.mod pins for encoding a script's result.
GOPHER_JSON_VERSION=v0.0.0-20201124131017-552bb3c4c3bf
SIGS_YAML_VERSION=v1.4.0
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../config/argocd/runner" && pwd)/main.go"
CACHE="${VPCNET_CACHE:-$HOME/.cache/vpcnet}/gopher-lua-${GOPHER_LUA_VERSION}"
BIN="$CACHE/bin"
STAMP="$CACHE/.complete"
# Bump the recipe when the way the binary is built changes; a changed
# runner source rebuilds it too.
WANT="recipe 1: gopher-lua@$GOPHER_LUA_VERSION gopher-json@$GOPHER_JSON_VERSION yaml@$SIGS_YAML_VERSION $(sha256sum "$SRC" | cut -c1-16)"

complete() { [[ -f "$STAMP" && "$(<"$STAMP")" == "$WANT" && -x "$BIN/argocd-lua-health" ]]; }
if complete; then echo "$BIN/argocd-lua-health"; exit 0; fi
if [[ "${1:-}" == --check ]]; then
  echo "argocd-lua-health is not built for this source (or is stale): run bash e2e/box/build-gopher-lua.sh" >&2
  exit 1
fi

mkdir -p "$CACHE/src" "$BIN"
exec 9>"$CACHE.lock"
flock 9
if complete; then echo "$BIN/argocd-lua-health"; exit 0; fi   # another invocation finished it

if ! command -v go >/dev/null; then
  if [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  else
    echo "build-gopher-lua: a Go toolchain (go) is required to build the Argo CD health runner" >&2
    exit 1
  fi
fi
echo "build-gopher-lua: building argocd-lua-health on gopher-lua $GOPHER_LUA_VERSION into $BIN (once)" >&2
cd "$CACHE/src"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
cat > go.mod <<GOMOD
module vpcnet.io/argocd-lua-health

go 1.24.0

require (
	github.com/yuin/gopher-lua $GOPHER_LUA_VERSION
	layeh.com/gopher-json $GOPHER_JSON_VERSION
	sigs.k8s.io/yaml $SIGS_YAML_VERSION
)
GOMOD
cp "$SRC" main.go
go mod tidy
go build -trimpath -ldflags "-s -w" -o "$BIN/.argocd-lua-health.tmp" .
mv "$BIN/.argocd-lua-health.tmp" "$BIN/argocd-lua-health"
echo "$WANT" > "$STAMP"
echo "$BIN/argocd-lua-health"
