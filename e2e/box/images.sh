# Container images for the box, built from the top-level Dockerfile without a
# registry or a Docker engine: a debootstrap base rootfs committed into buildah's
# storage as localhost/debian:bookworm-slim, `buildah bud --target X`, an OCI
# archive per image, imported into the node's containerd. Every archive is keyed
# by a hash of what went into it and is never rebuilt while the key matches.
# Sourced by up.sh (needs lib.sh); `images.sh build` builds without a box.
# shellcheck shell=bash

CACHE="${VPCNET_CACHE:-$HOME/.cache/vpcnet}"
IMAGE_CACHE="$CACHE/images"
BASE_RECIPE=1                     # bump when the base rootfs recipe changes
BASE_TAR="$CACHE/base-bookworm-r$BASE_RECIPE.tar"
BASE_IMAGE=localhost/debian:bookworm-slim
BUILDAH=(buildah --root "$CACHE/buildah/root" --runroot "$CACHE/buildah/run" --storage-driver vfs)
# component -> binaries the Dockerfile copies from target/release/ (empty: none)
declare -A IMAGE_BINARY=(
  [pause]="" [testapp]="" [operator]=vpcnet-operator [cni]="vpcnet-cni vpcnet-node"
  [natgw]=vpcnet-natgw [dns]=vpcnet-dns
)

# base_rootfs: debootstrap --variant=minbase bookworm, tarred once into the cache.
base_rootfs() {
  [[ -s "$BASE_TAR" ]] && return 0
  local dir
  dir=$(mktemp -d "$CACHE/.base.XXXXXX")
  log "debootstrap bookworm base rootfs (once, ~30 s)"
  debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 ||
    { rm -rf "$dir"; die "debootstrap failed (see $CACHE/debootstrap.log)"; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  # Same sources as the public debian image, so `apt-get update` in a RUN works.
  printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    >"$dir/etc/apt/sources.list"
  tar -C "$dir" --numeric-owner -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$dir"
}

# base_image: the base rootfs committed into buildah storage, once per recipe.
base_image() {
  local want="base-r$BASE_RECIPE"
  if "${BUILDAH[@]}" inspect --type image --format '{{index .ImageAnnotations "vpcnet.box/recipe"}}' "$BASE_IMAGE" 2>/dev/null | grep -x "$want" >/dev/null; then
    return 0
  fi
  base_rootfs
  local ctr mnt
  ctr=$("${BUILDAH[@]}" from scratch)
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  tar -C "$mnt" --numeric-owner -xf "$BASE_TAR"
  "${BUILDAH[@]}" umount "$ctr" >/dev/null
  "${BUILDAH[@]}" config --annotation "vpcnet.box/recipe=$want" --cmd /bin/bash \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  "${BUILDAH[@]}" commit -q "$ctr" "$BASE_IMAGE" >/dev/null
  "${BUILDAH[@]}" rm "$ctr" >/dev/null
}

# image_context NAME DIR: copies the build context of NAME into DIR (only the
# files it uses, so the key and the context are the same set); prints the key
# and the Dockerfile. Product images: the top-level Dockerfile + the release
# binary. Test images: e2e/images/NAME/ with its C source compiled statically.
image_context() {
  local name=$1 dir=$2 bin
  if [[ -d "$REPO/e2e/images/$name" ]]; then
    cp -r "$REPO/e2e/images/$name/." "$dir/"
    cc -static -O2 -o "$dir/$name" "$dir/$name.c" || die "cc $name.c failed"
    rm "$dir/$name.c"
  else
    mkdir -p "$dir/target/release" "$dir/config"
    for bin in ${IMAGE_BINARY[$name]}; do
      [[ -x "$BOX_TARGET/$BOX_PROFILE/$bin" ]] || return 2
      if [[ "$BOX_PROFILE" == release ]]; then
        cp "$BOX_TARGET/$BOX_PROFILE/$bin" "$dir/target/release/"
      else
        # A debug build is mostly debug info (~400 MB for the operator).
        objcopy --strip-debug "$BOX_TARGET/$BOX_PROFILE/$bin" "$dir/target/release/$bin"
      fi
    done
    cp "$REPO/Dockerfile" "$dir/"
    [[ "$name" == cni ]] && cp -r "$REPO/config/cni" "$dir/config/"
  fi
  (cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

# build_image NAME: archive $IMAGE_CACHE/vpcnet-NAME-<key>.tar, built unless the
# key exists. Prints the archive path; returns 2 if the binary is not built.
build_image() {
  local name=$1 ctx key archive rc=0
  ctx=$(mktemp -d "$CACHE/.ctx.XXXXXX")
  key=$(image_context "$name" "$ctx") || rc=$?
  if ((rc)); then
    rm -rf "$ctx"
    return "$rc"
  fi
  archive="$IMAGE_CACHE/vpcnet-$name-$key.tar"
  if [[ ! -s "$archive" ]]; then
    base_image
    log "building image vpcnet-$name ($key)"
    local tag="docker.io/local/vpcnet-$name:latest"
    "${BUILDAH[@]}" bud -q --pull=false --isolation chroot --layers=false \
      --build-arg "BASE=$BASE_IMAGE" --target "$name" -t "$tag" "$ctx" \
      >"$CACHE/build-$name.log" 2>&1 || { rm -rf "$ctx"; die "image $name failed (see $CACHE/build-$name.log)"; }
    rm -f "$IMAGE_CACHE"/vpcnet-"$name"-*.tar
    "${BUILDAH[@]}" push -q "$tag" "oci-archive:$archive.tmp:$tag" >>"$CACHE/build-$name.log" 2>&1 ||
      { rm -rf "$ctx" "$archive.tmp"; die "pushing image $name to $archive failed (see $CACHE/build-$name.log)"; }
    mv "$archive.tmp" "$archive"
    # vfs keeps full copies: the archive is the cache, not buildah's storage.
    "${BUILDAH[@]}" rmi -f "$tag" >/dev/null 2>&1 || true
    "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
  fi
  rm -rf "$ctx"
  echo "$archive"
}

# build_images NAME...: prints the archive of each image, one per line; an
# image whose release binary is not built is skipped with a message, any other
# failure stops.
build_images() {
  mkdir -p "$IMAGE_CACHE"
  local name archive rc out=() lock
  # One builder at a time: buildah's vfs storage and `rmi --prune` are shared
  # by every box and every `images.sh build` of this user.
  exec {lock}>"$CACHE/images.lock"
  flock "$lock"
  for name in "$@"; do
    rc=0
    archive=$(build_image "$name") || rc=$?
    case $rc in
      0) out+=("$archive") ;;
      2) log "image vpcnet-$name skipped: not every one of ${IMAGE_BINARY[$name]} is built in $BOX_TARGET/$BOX_PROFILE" ;;
      *) die "image vpcnet-$name was not built (exit $rc)" ;;
    esac
  done
  exec {lock}>&-
  printf '%s\n' "${out[@]}"
}

# import_images ARCHIVE...: into the chosen node's containerd (k8s.io namespace).
import_images() {
  local a
  for a in "$@"; do
    node_exec ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --no-unpack=false "$a" >/dev/null ||
      die "ctr import of $a failed"
  done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  [[ "${1:-}" == build ]] || die "usage: images.sh build [NAME...]"
  shift
  (($#)) || set -- pause testapp operator cni natgw dns
  build_images "$@"
fi
