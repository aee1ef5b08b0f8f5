#!/usr/bin/env bash
# Usage: scripts/build-image.sh [--offline] [--cuda] TAG
# Builds the action image from Dockerfile.action (docs/action.md).
#   default    the normal way: base python:3.11-slim from its registry, packages from PyPI and PyTorch's index.
#   --offline  nothing is fetched during the build: a wheelhouse of requirements-action.txt is made here with
#              `pip download` (cached), and the base is $OWTRAIN_IMAGE_BASE, else python:3.11-slim if the engine
#              has it, else a Debian bookworm base with python3 made here with debootstrap (root; cached).
#   --cuda     the CUDA torch wheel (it brings its own CUDA libraries) on the same plain Python 3.11 base.
# Environment: DOCKER (docker command, default docker), OWTRAIN_IMAGE_CACHE (default build/image-cache),
#   OWTRAIN_TORCH_INDEX (torch's wheel index; default PyTorch's cpu or cu126 index; set but empty: pip's own
#   configured index), OWTRAIN_IMAGE_BASE (base image), PYTHON (runs pip download; default .venv/bin/python).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/build-image.sh [--offline] [--cuda] TAG" >&2; exit 2; }
log() { printf '[build-image] %s\n' "$*" >&2; }

offline=0 cuda=0 tag=""
for arg in "$@"; do
  case "$arg" in
    --offline) offline=1 ;;
    --cuda) cuda=1 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $arg" >&2; usage ;;
    *) [ -z "$tag" ] || usage; tag=$arg ;;
  esac
done
[ -n "$tag" ] || usage

DOCKER=${DOCKER:-docker}
CACHE=${OWTRAIN_IMAGE_CACHE:-build/image-cache}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
variant=cpu; [ "$cuda" = 1 ] && variant=cu126
TORCH_INDEX=${OWTRAIN_TORCH_INDEX-https://download.pytorch.org/whl/$variant}
TORCH_VERSION=$(sed -n 's/^torch==//p' requirements-action.txt)
DEBIAN_BASE=owtrain-base:bookworm-py311

# A wheelhouse for CPython 3.11 on this architecture (wheels only), whatever Python runs pip here.
make_wheelhouse() {
  local key dir tmp target
  key=$(printf '%s\n%s\n%s\n' "$(sha256sum requirements-action.txt)" "$TORCH_INDEX" "$(uname -m)" \
        | sha256sum | cut -c1-12)
  dir=$CACHE/wheelhouse-$variant-$key
  if [ -f "$dir/.complete" ]; then log "wheelhouse: reusing $dir"; echo "$dir"; return; fi
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/wheelhouse.XXXXXX")
  target=(--only-binary=:all:)
  if [ "$("$PY" -c 'import sys; print(sys.version_info[:2] == (3, 11))')" != True ]; then
    target+=(--python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none)
    for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux_2_5 manylinux1; do
      target+=(--platform "${tag}_$(uname -m)")
    done
  fi
  log "wheelhouse: downloading torch==$TORCH_VERSION ${TORCH_INDEX:+from $TORCH_INDEX} and the action's pins"
  "$PY" -m pip download -q "${target[@]}" -d "$tmp" "torch==$TORCH_VERSION" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} >&2
  "$PY" -m pip download -q "${target[@]}" -d "$tmp" --find-links "$tmp" -r requirements-action.txt >&2
  if [ "$cuda" = 0 ] && compgen -G "$tmp/nvidia_*" >/dev/null; then
    rm -rf "$tmp"
    log "the torch wheel found is a CUDA build: set OWTRAIN_TORCH_INDEX=https://download.pytorch.org/whl/cpu"
    exit 1
  fi
  touch "$tmp/.complete"
  rm -rf "$dir" && mv "$tmp" "$dir"
  echo "$dir"
}

# The first Debian mirror apt uses here (one-line or deb822 sources), security archives excepted.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed -n -e 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) .*/\2/p' -e 's/^URIs: *\([^ ]*\).*/\1/p' "$f"
  done | awk '!/security/ { print; exit }'
}

# Debian bookworm (python3 3.11, venv) made with debootstrap, kept as a tarball so a new engine imports it
# in seconds.
ensure_debian_base() {
  "$DOCKER" image inspect "$DEBIAN_BASE" >/dev/null 2>&1 && return
  local tarball=$CACHE/bookworm-py311-rootfs.tar
  if [ ! -f "$tarball" ]; then
    [ "$(id -u)" -eq 0 ] || { log "making the Debian base needs root (debootstrap, chroot)"; exit 1; }
    command -v debootstrap >/dev/null || { log "install debootstrap (scripts/setup.sh --with-test-services)"; exit 1; }
    local mirror rootfs
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || { log "no Debian mirror found in /etc/apt/sources.list*"; exit 1; }
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    chmod 755 "$rootfs"  # the image's / (mktemp makes it 0700)
    log "Debian base: debootstrap bookworm from $mirror (about a minute)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
      || { log "debootstrap failed, see $CACHE/debootstrap.log"; rm -rf "$rootfs"; exit 1; }
    chroot "$rootfs" apt-get -o Acquire::Check-Valid-Until=false update -qq
    DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get install -y -qq --no-install-recommends \
      python3 python3-pip python3-venv >/dev/null
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    tar -C "$rootfs" -c . >"$tarball.tmp" && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  log "Debian base: importing $tarball as $DEBIAN_BASE"
  "$DOCKER" import "$tarball" "$DEBIAN_BASE" >/dev/null
}

args=(-f Dockerfile.action -t "$tag" --build-arg "TORCH_VERSION=$TORCH_VERSION")
[ -z "$TORCH_INDEX" ] || args+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
started=$(date +%s)
if [ "$offline" = 0 ]; then
  [ -z "${OWTRAIN_IMAGE_BASE:-}" ] || args+=(--build-arg "BASE=$OWTRAIN_IMAGE_BASE")
  "$DOCKER" build "${args[@]}" .
else
  wheelhouse=$(make_wheelhouse)
  base=${OWTRAIN_IMAGE_BASE:-}
  if [ -z "$base" ]; then
    if "$DOCKER" image inspect python:3.11-slim >/dev/null 2>&1; then base=python:3.11-slim
    else ensure_debian_base; base=$DEBIAN_BASE; fi
  fi
  # A build context of exactly what the Dockerfile copies, the wheelhouse hard-linked in.
  context=$(mktemp -d "$CACHE/context.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  # (the paths .dockerignore lets in, so the two lists cannot drift apart; the wheelhouse is added below)
  mapfile -t copied < <(sed -n 's/^!//p' .dockerignore | grep -vx wheelhouse)
  cp -r "${copied[@]}" "$context/"
  find "$context" -name __pycache__ -prune -exec rm -rf {} +
  cp -al "$wheelhouse" "$context/wheelhouse" 2>/dev/null || cp -r "$wheelhouse" "$context/wheelhouse"
  log "building $tag offline on $base"
  "$DOCKER" build -q "${args[@]}" --build-arg "BASE=$base" --build-arg OFFLINE=1 --network none "$context" >/dev/null
fi
size=$("$DOCKER" image inspect -f '{{.Size}}' "$tag")
log "built $tag in $(( $(date +%s) - started )) s, $(( size / 1000000 )) MB"
