#!/usr/bin/env bash
# Builds CoreDNS, the server the DNS benchmark compares vpcnet-dns with, from
# its Go module into ~/.cache/vpcnet/coredns-<version>/coredns, once. The
# version and every dependency are pinned by coredns/go.mod and coredns/go.sum
# beside this script (a module whose only content is `tool
# github.com/coredns/coredns`). Like e2e/box/build-gopher-lua.sh: the binary
# is built to a temporary name and renamed, the stamp file (naming the recipe
# and a hash of go.mod/go.sum) is written last, and concurrent invocations
# wait on a lock. Progress goes to stderr; the binary's path to stdout.
#
# With --check it only prints the binary's path, or fails naming this script.
#
# Env: VPCNET_CACHE (default ~/.cache/vpcnet)
set -euo pipefail
MOD="$(cd "$(dirname "${BASH_SOURCE[0]}")/coredns" && pwd)"
VERSION="$(awk '$1 == "github.com/coredns/coredns" { print $2 }' "$MOD/go.mod")"
if [[ -z "$VERSION" ]]; then
  echo "build-coredns: no github.com/coredns/coredns version in $MOD/go.mod" >&2
  exit 1
fi
CACHE="${VPCNET_CACHE:-$HOME/.cache/vpcnet}/coredns-${VERSION}"
BIN="$CACHE/coredns"
STAMP="$CACHE/.complete"
# Bump the recipe when the way the binary is built changes; a changed
# go.mod or go.sum rebuilds it too.
WANT="recipe 1: coredns@$VERSION $(cat "$MOD/go.mod" "$MOD/go.sum" | sha256sum | cut -c1-16)"

complete() { [[ -f "$STAMP" && "$(<"$STAMP")" == "$WANT" && -x "$BIN" ]]; }
if complete; then echo "$BIN"; exit 0; fi
if [[ "${1:-}" == --check ]]; then
  echo "CoreDNS $VERSION is not built (or is stale): run bash agents/dns/benches/build-coredns.sh" >&2
  exit 1
fi

mkdir -p "$CACHE/src"
exec 9>"$CACHE.lock"
if ! flock -n 9; then
  echo "build-coredns: waiting for another build of CoreDNS $VERSION ($CACHE.lock)" >&2
  flock 9
fi
if complete; then echo "$BIN"; exit 0; fi   # another invocation finished it

if ! command -v go >/dev/null; then
  if [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  else
    echo "build-coredns: a Go toolchain (go) is required to build CoreDNS" >&2
    exit 1
  fi
fi
echo "build-coredns: building CoreDNS $VERSION with $(go env GOVERSION) into $BIN (once; a few minutes cold)" >&2
cd "$CACHE/src"
cp "$MOD/go.mod" "$MOD/go.sum" .
export GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0
start=$SECONDS
echo "build-coredns: downloading modules" >&2
go mod download
echo "build-coredns: compiling" >&2
go build -trimpath -ldflags "-s -w" -o "$CACHE/.coredns.tmp" github.com/coredns/coredns
mv "$CACHE/.coredns.tmp" "$BIN"
echo "$WANT" > "$STAMP"
echo "build-coredns: CoreDNS $VERSION built in $((SECONDS - start)) s" >&2
echo "$BIN"
