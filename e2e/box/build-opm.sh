#!/usr/bin/env bash
# Builds opm (github.com/operator-framework/operator-registry's cmd/opm: file-
# based catalogs, `opm render`, `opm validate`) into
# ~/.cache/vpcnet/opm-<version>/bin, once. `go install …@version` is refused
# (its version check lists the module), so config/olm/opm/go.mod names it as
# a tool and, with go.sum, pins every dependency; opm needs cgo (sqlite) and
# the tags operator-registry's own Makefile builds with. Like
# build-gopher-lua.sh: built to a temporary name and renamed, the stamp file
# (the recipe and a hash of go.mod and go.sum) written last, concurrent
# invocations wait on a lock. Prints the binary's path.
#
# With --check it only prints the binary's path, or fails naming this script.
#
# Env: VPCNET_CACHE (default ~/.cache/vpcnet)
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../config/olm/opm" && pwd)"
OPM_VERSION="$(awk -v m=github.com/operator-framework/operator-registry '$1 == m { print $2 } $1 == "require" && $2 == m { print $3 }' "$SRC/go.mod" | head -n1)"
if [[ -z "$OPM_VERSION" ]]; then
  echo "build-opm: $SRC/go.mod does not require github.com/operator-framework/operator-registry" >&2
  exit 1
fi
TAGS=json1,containers_image_openpgp
CACHE="${VPCNET_CACHE:-$HOME/.cache/vpcnet}/opm-${OPM_VERSION}"
BIN="$CACHE/bin"
STAMP="$CACHE/.complete"
WANT="recipe 1: operator-registry@$OPM_VERSION tags $TAGS $(cat "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-16)"

complete() { [[ -f "$STAMP" && "$(<"$STAMP")" == "$WANT" && -x "$BIN/opm" ]]; }
if complete; then echo "$BIN/opm"; exit 0; fi
if [[ "${1:-}" == --check ]]; then
  echo "opm is not built for this source (or is stale): run bash e2e/box/build-opm.sh" >&2
  exit 1
fi

mkdir -p "$CACHE/src" "$BIN"
exec 9>"$CACHE.lock"
flock 9
if complete; then echo "$BIN/opm"; exit 0; fi   # another invocation finished it

if ! command -v go >/dev/null; then
  if [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  else
    echo "build-opm: a Go toolchain (go) is required to build opm" >&2
    exit 1
  fi
fi
echo "build-opm: building opm $OPM_VERSION into $BIN (once; several minutes)" >&2
cd "$CACHE/src"
export GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=1
cp "$SRC/go.mod" "$SRC/go.sum" .
echo "build-opm: downloading modules" >&2
go mod download
echo "build-opm: compiling" >&2
nice -n 19 go build -trimpath -tags "$TAGS" -ldflags "-s -w" -o "$BIN/.opm.tmp" \
  github.com/operator-framework/operator-registry/cmd/opm
mv "$BIN/.opm.tmp" "$BIN/opm"
echo "$WANT" > "$STAMP"
echo "build-opm: done" >&2
echo "$BIN/opm"
