"""scripts/gpu_validate.py end to end on this CPU machine, against the fake NVML.

The script runs once on a real GPU, unrehearsed, so its whole path is run here first: every
section, the sampled path (the tracker's pynvml without an energy counter), the per-window and
per-epoch comparisons, the JSON it leaves. The fake GPUs draw constant power (300 W and 200 W)
and their counters are the exact integral of it, so the figures are checkable too: the tracker's
mean power must be the fake's watts, and what it reports for a window, an epoch or a run may
differ from the script's counter reads only by the time between the tracker's edge and the
script's read just outside it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
ROOT = HERE.parent
WATTS = (300.0, 200.0)
# The most time between a tracker edge and the script's read next to it. Generous: on a
# loaded 2-core machine either read can be preempted for tens of ms. This dry run checks that
# the script works and its figures are sane; the accuracy itself is measured on a real GPU.
EDGE_S = 0.5
# a run's edges: on_train_begin's read, then EnergyCallback's start() up to its first reading
RUN_EDGE_S = 1.0


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpuval") / "gpu_validate.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               FAKE_NVML_WATTS=",".join(str(w) for w in WATTS),
               PYTHONPATH=os.pathsep.join([str(HERE / "fakes" / "nvml_site"), str(ROOT),
                                           os.environ.get("PYTHONPATH", "")]))
    env.pop("CUDA_VISIBLE_DEVICES", None)  # every fake GPU is measured
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_validate.py"),
                           "--seconds", "2", "--budget-s", "40", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_every_section_without_error(result: tuple[dict, str]) -> None:
    data, stdout = result
    for name in ("meta", "accuracy", "hf", "overhead"):
        assert name in data and "error" not in data[name], (name, data.get(name))
        assert f"SECTION {name} ok" in stdout  # printed as each section ends
    meta = data["meta"]
    assert meta["gpus"] == ["NVIDIA H100 80GB HBM3"] * 2 and meta["driver"] == "580.159.04"
    for key in ("counter_read_us", "power_usage_read_us", "power_instant_field_read_us",
                "counter_update_period_ms"):
        assert _finite(meta[key]) and meta[key] > 0, key
    assert _finite(data["overhead"]["step_ms_median"]["track"])


def test_accuracy_counter_and_sampled_rows(result: tuple[dict, str]) -> None:
    acc = result[0]["accuracy"]
    for method in ("counter", "sampled"):
        run = acc[method]
        assert "error" not in run, run
        assert [g["method"] for g in run["gpus"]] == [method, method]
        uncovered_s = run["ref_wall_s"] - run["duration_s"]  # before start(), after the stop
        assert 0 <= uncovered_s < 1.0
        for g, watts in zip(run["gpus"], WATTS):
            assert _finite(g["error_pct"]) and _finite(g["nvml_delta_j"])
            assert g["tracker_j"] / run["duration_s"] == pytest.approx(watts, rel=0.01)
            assert abs(g["tracker_j"] - g["nvml_delta_j"]) <= watts * (uncovered_s + EDGE_S)
        assert run["windows_count"] >= 3 and len(run["windows"]) == run["windows_count"]
        for w in run["windows"]:
            assert w["method"] == method and _finite(w["error_pct"])
            assert abs(w["tracker_gpu_j"] - w["nvml_edges_j"]) <= sum(WATTS) * EDGE_S, w
    assert acc["sampled"]["gpus"][0]["power_source"] != "none"


def test_hf_per_epoch_rows(result: tuple[dict, str]) -> None:
    hf = result[0]["hf"]
    assert [e["name"] for e in hf["epochs"]] == ["epoch 0", "epoch 1", "epoch 2"]
    for e in hf["epochs"]:
        assert _finite(e["error_pct"]) and e["nvml_edges_j"] > 0
        assert abs(e["tracker_gpu_j"] - e["nvml_edges_j"]) <= sum(WATTS) * EDGE_S, e
    assert _finite(hf["error_pct"]) and _finite(hf["sum_epochs_error_pct"])
    assert abs(hf["run_gpu_j"] - hf["nvml_delta_j"]) <= sum(WATTS) * RUN_EDGE_S
    assert hf["run_gpu_j"] / hf["duration_s"] == pytest.approx(sum(WATTS), rel=0.01)
    assert hf["log_rows_with_energy"] >= 1 and not hf["stopped_early_for_budget"]
