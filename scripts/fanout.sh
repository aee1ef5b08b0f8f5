#!/usr/bin/env bash
# Usage: scripts/fanout.sh SHARDS.json [PARALLEL] [-- OWTRAIN_ACTION_PARAMS_OPTIONS...]
# Invokes dist-train once per train shard of SHARDS.json (the list `owtrain presign` writes), at
# most PARALLEL (default 8) invocations at a time, and prints one activation id per line. Worker
# names (w1, w2, …) and per-worker tokens match what `owtrain train` uses, and the training
# parameters are `owtrain local`'s (override them after `--`, e.g. `-- -p lr 0.05 --epochs 2`).
# No secret reaches a command line (where every user of the machine can read it): `owtrain
# action-params` mints the tokens from the environment into mode-0600 files, and `wsk` reads each
# invocation's parameters with --param-file. For continuation across activations use
# `owtrain train --invoker openwhisk` instead.
# Environment: OWTRAIN_PS_URL (required), OWTRAIN_JOB_SECRET (required, for the tokens),
# OWTRAIN_JOB (default "job"), WSK (default "wsk"). Needs owtrain on PATH.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 SHARDS.json [PARALLEL] [-- OWTRAIN_ACTION_PARAMS_OPTIONS...]" >&2
  exit 2
fi
shards=$1
shift
parallel=8
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  parallel=$1
  shift
fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then
  shift
fi
if [ ! -r "$shards" ]; then
  echo "cannot read shard list $shards" >&2
  exit 2
fi
: "${OWTRAIN_PS_URL:?set OWTRAIN_PS_URL to the parameter server URL}"
: "${OWTRAIN_JOB_SECRET:?set OWTRAIN_JOB_SECRET to the job secret (tokens are minted from it)}"
export OWTRAIN_PS_URL OWTRAIN_JOB_SECRET FANOUT_WSK=${WSK:-wsk}

params_dir=$(mktemp -d)
trap 'rm -rf "$params_dir"' EXIT
owtrain action-params "$shards" --out "$params_dir" "$@" > "$params_dir/list"

invoke_one() {  # worker param-file -> prints the activation id
  local out
  out=$("$FANOUT_WSK" action invoke dist-train --param-file "$2")
  echo "${out##* }"  # wsk prints "ok: invoked /_/dist-train with id <id>"
}
export -f invoke_one

xargs -P "$parallel" -L 1 bash -c 'invoke_one "$@"' _ < "$params_dir/list"
