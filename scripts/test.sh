#!/usr/bin/env bash
# Install everything the tests need into ./.venv (from scratch on a fresh machine) and run them.
# Usage: ./scripts/test.sh [pytest args]
source "$(dirname "$0")/_venv.sh"
make_venv "test,huggingface,lightning"
cd "$ROOT"
echo "==> ruff"
"$VENV/bin/ruff" check .
echo "==> mypy"
"$VENV/bin/python" -m mypy
echo "==> pytest"
set +e
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" -m pytest -q -rs "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$rc"
