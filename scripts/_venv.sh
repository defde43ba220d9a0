# Shared by demo.sh and test.sh: create ./.venv and install the project with the given extras.
# torch is pinned to 2.13.0 (a CPU build is pre-staged on the project machines; an open range
# would pull the newest build with several GB of CUDA packages).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ENERGY_TRACKER_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

make_venv() {  # make_venv EXTRAS
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating virtualenv $VENV"
        "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    echo "==> installing trainjoule[$extras] (first run takes a few minutes)"
    # The distribution was called energy-tracker (a name taken on PyPI by another project): an
    # editable install of this checkout under that name would sit beside trainjoule's, and
    # uninstalling it later would delete the shared `energy-tracker` command. Only our own
    # (an editable install of $ROOT) is removed.
    if "$VENV/bin/python" -m pip show energy-tracker 2>/dev/null \
            | grep -qxF "Editable project location: $ROOT"; then
        "$VENV/bin/python" -m pip uninstall -q -y energy-tracker
    fi
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]"
}
