#!/usr/bin/env bash
# Builds olm-validate (config/olm/validate: the bundle, CSV and CRD validators
# of github.com/operator-framework/api plus the operatorframework optional
# suite) into ~/.cache/vpcnet/olm-validate-<version>/bin, once. Like
# build-gopher-lua.sh: the module's checked-in go.mod and go.sum pin every
# dependency, the binary is built to a temporary name and renamed, the stamp
# file (naming the recipe and a hash of the sources) is written last, and
# concurrent invocations wait on a lock. Prints the binary's path.
#
# With --check it only prints the binary's path, or fails naming this script.
#
# Env: VPCNET_CACHE (default ~/.cache/vpcnet)
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../config/olm/validate" && pwd)"
# The version go.mod pins (the cache directory is named after it).
OLM_API_VERSION="$(awk -v m=github.com/operator-framework/api '$1 == m { print $2 } $1 == "require" && $2 == m { print $3 }' "$SRC/go.mod" | head -n1)"
if [[ -z "$OLM_API_VERSION" ]]; then
  echo "build-olm-validate: $SRC/go.mod does not require github.com/operator-framework/api" >&2
  exit 1
fi
CACHE="${VPCNET_CACHE:-$HOME/.cache/vpcnet}/olm-validate-${OLM_API_VERSION}"
BIN="$CACHE/bin"
STAMP="$CACHE/.complete"
# Bump the recipe when the way the binary is built changes; changed
# sources (main.go, go.mod, go.sum) rebuild it too.
WANT="recipe 1: operator-framework/api@$OLM_API_VERSION $(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-16)"

complete() { [[ -f "$STAMP" && "$(<"$STAMP")" == "$WANT" && -x "$BIN/olm-validate" ]]; }
if complete; then echo "$BIN/olm-validate"; exit 0; fi
if [[ "${1:-}" == --check ]]; then
  echo "olm-validate is not built for this source (or is stale): run bash e2e/box/build-olm-validate.sh" >&2
  exit 1
fi

mkdir -p "$CACHE/src" "$BIN"
exec 9>"$CACHE.lock"
flock 9
if complete; then echo "$BIN/olm-validate"; exit 0; fi   # another invocation finished it

if ! command -v go >/dev/null; then
  if [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  else
    echo "build-olm-validate: a Go toolchain (go) is required to build the bundle validator" >&2
    exit 1
  fi
fi
echo "build-olm-validate: building olm-validate on operator-framework/api $OLM_API_VERSION into $BIN (once)" >&2
cd "$CACHE/src"
export GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=0
cp "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" .
echo "build-olm-validate: downloading modules" >&2
go mod download
echo "build-olm-validate: compiling" >&2
nice -n 19 go build -trimpath -ldflags "-s -w" -o "$BIN/.olm-validate.tmp" .
mv "$BIN/.olm-validate.tmp" "$BIN/olm-validate"
echo "$WANT" > "$STAMP"
echo "build-olm-validate: done" >&2
echo "$BIN/olm-validate"
