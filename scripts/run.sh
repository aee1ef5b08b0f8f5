#!/usr/bin/env bash
# Usage: scripts/run.sh [owtrain local options...]
# Sets the machine up, then trains LeNet5 on MNIST end to end on the embedded default
# (local invoker, embedded S3, parameter server, event bridge) and prints the test accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/owtrain local "$@"
