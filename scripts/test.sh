#!/usr/bin/env bash
# Usage: scripts/test.sh [PYTEST_ARGS...]
# Sets the machine up (venv, packages, test services), checks the code (ruff, mypy: the pinned versions in
# requirements-dev.txt, settings in pyproject.toml) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-test-services
set +e
echo "== ruff" && .venv/bin/ruff check .
lint=$?
echo "== mypy" && .venv/bin/mypy
types=$?
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
if [ "$lint" -ne 0 ] || [ "$types" -ne 0 ]; then echo "ruff or mypy found problems (above)" >&2; exit 1; fi
exit "$rc"
