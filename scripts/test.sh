#!/usr/bin/env bash
# Install everything the tests need into ./.venv (from scratch on a fresh machine) and run them.
# Usage: ./scripts/test.sh [pytest args]
source "$(dirname "$0")/_venv.sh"
make_venv "test,huggingface,lightning,docs"
cd "$ROOT"
echo "==> ruff"
"$VENV/bin/ruff" check .
echo "==> mypy"
"$VENV/bin/python" -m mypy
echo "==> mkdocs build --strict"
# the documentation site: a broken link or anchor, a page left out of the nav or a docstring
# the API page cannot render fails here (built into a temporary directory, never into the tree)
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 "$VENV/bin/python" -m mkdocs build --strict --quiet -f "$ROOT/mkdocs.yml" -d "$site"
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
