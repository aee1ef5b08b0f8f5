#!/usr/bin/env bash
# Usage: scripts/fanout.sh SHARDS.json [PARALLEL]
# Invokes dist-train once per train shard of SHARDS.json (the list `owtrain presign` writes), at
# most PARALLEL (default 8) invocations at a time, and prints one activation id per line. Worker
# names (w1, w2, …) and per-worker tokens match what `owtrain train` uses; for continuation
# across activations use `owtrain train --invoker openwhisk` instead.
# Environment: OWTRAIN_PS_URL (required), OWTRAIN_JOB_SECRET (required, for the tokens),
# OWTRAIN_JOB (default "job"), WSK (default "wsk"). Needs jq and owtrain on PATH.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 SHARDS.json [PARALLEL]" >&2
  exit 2
fi
shards=$1
parallel=${2:-8}
if [ ! -r "$shards" ]; then
  echo "cannot read shard list $shards" >&2
  exit 2
fi
: "${OWTRAIN_PS_URL:?set OWTRAIN_PS_URL to the parameter server URL}"
: "${OWTRAIN_JOB_SECRET:?set OWTRAIN_JOB_SECRET to the job secret (tokens are minted from it)}"
export OWTRAIN_PS_URL OWTRAIN_JOB_SECRET
export FANOUT_JOB=${OWTRAIN_JOB:-job} FANOUT_WSK=${WSK:-wsk}

invoke_one() {  # worker url sha256 -> prints the activation id
  local token out
  token=$(owtrain ps token --job "$FANOUT_JOB" --worker "$1")
  out=$("$FANOUT_WSK" action invoke dist-train --param dataset_url "$2" --param dataset_sha256 "$3" \
    --param apihost "$OWTRAIN_PS_URL" --param ps_token "$token" --param job "$FANOUT_JOB" --param worker "$1")
  echo "${out##* }"  # wsk prints "ok: invoked /_/dist-train with id <id>"
}
export -f invoke_one

jq -r '[.[] | select(.split == "train")] | to_entries[] | "w\(.key + 1) \(.value.url) \(.value.sha256)"' "$shards" \
  | xargs -P "$parallel" -L 1 bash -c 'invoke_one "$@"' _
