#!/usr/bin/env bash
# Usage: scripts/deploy.sh IMAGE
# Creates or updates, with `wsk`, what wsk/manifest.yaml describes: the dist-train action running the
# docker IMAGE (an explicit tag, not latest: OpenWhisk must pull latest from Docker Hub), the
# shard-uploaded trigger and the rule linking them. Environment: OWTRAIN_PS_URL (parameter server
# URL, bound as the action's default `apihost`), OWTRAIN_JOB (default "job"), WSK (default "wsk").
# With OWTRAIN_SERVING_REPOSITORY (s3://bucket/prefix; OWTRAIN_S3_ENDPOINT and OWTRAIN_S3_* keys) it
# also deploys the `predict` web action from the same image (docs/serving.md).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 IMAGE   (e.g. you/owtrain-action:0.1.0)" >&2
  exit 2
fi
image=$1
name=${image##*/}
if [[ "$name" != *:* || "$name" == *:latest ]]; then
  echo "image $image needs an explicit tag other than 'latest' (see docs/invocation.md)" >&2
  exit 2
fi
wsk=${WSK:-wsk}
params=(--param job "${OWTRAIN_JOB:-job}")
if [ -n "${OWTRAIN_PS_URL:-}" ]; then
  params+=(--param apihost "$OWTRAIN_PS_URL")
fi

"$wsk" action update dist-train --docker "$image" --timeout 300000 --memory 512 --logsize 10 \
  --annotation provide-api-key false "${params[@]}"
"$wsk" trigger update shard-uploaded --param source minio
"$wsk" rule update shard-uploaded-rule shard-uploaded dist-train
"$wsk" rule enable shard-uploaded-rule
if [ -n "${OWTRAIN_SERVING_REPOSITORY:-}" ]; then  # the prediction web action (docs/serving.md)
  predict=(--param repository "$OWTRAIN_SERVING_REPOSITORY")
  if [ -n "${OWTRAIN_S3_ENDPOINT:-}" ]; then
    predict+=(--param s3_endpoint "$OWTRAIN_S3_ENDPOINT" --param s3_access_key "${OWTRAIN_S3_ACCESS_KEY:-}"
              --param s3_secret_key "${OWTRAIN_S3_SECRET_KEY:-}")
  fi
  "$wsk" action update predict --docker "$image" --main serving.action:main --web true --timeout 60000 \
    --memory 512 --logsize 10 "${predict[@]}"
fi
