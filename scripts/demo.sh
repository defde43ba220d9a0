#!/usr/bin/env bash
# The main job: a real, short, tracked training run (GPU if there is one, else CPU), then the
# summary and where the logs and the HTML report are.
# Usage: ./scripts/demo.sh [--region DE] [--steps N]
source "$(dirname "$0")/_venv.sh"
make_venv "torch"
cd "$ROOT"
exec "$VENV/bin/python" "$ROOT/scripts/demo_train.py" "$@"
