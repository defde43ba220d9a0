"""scripts/bench_long_run.py measures what it claims: its fake GPUs run on the simulated clock
the tracker reads, so the run's energy matches their exact integral.

The bench once built its FakeGPUs without `clock=`: FakeGPU.clock is bound to the real
time.monotonic, so the counters followed the few wall seconds of the simulation instead of
the simulated hours and the bench printed energy_error_pct ~ -100 % (0 J where the machine's
uptime was under the fake clock's start). Time here is the bench's own fake clock: no sleeps.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench_long_run.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_long_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)      # defines only; main() is not run
    return module


def test_the_bursty_load_integral_is_the_integral_of_its_power():
    bursty = _bench_module().Bursty(640.0, 180.0, 220.0, 25.0, 0.3, phase_s=3.4)
    # midpoint sums at 10 ms (the load's edges fall on 0.1 s): two hours with both eval
    # windows, an eval window's edges, one pause
    for t0, t1 in ((0.0, 7200.0), (3470.0, 3610.0), (100.05, 100.75)):
        n = round((t1 - t0) * 100)
        numeric = sum(bursty.power(t0 + (k + 0.5) / 100) for k in range(n)) / 100
        assert abs(bursty.energy(t1) - bursty.energy(t0) - numeric) < 1e-6 * max(1.0, numeric)
    assert abs(bursty.energy(3600.0) - bursty.energy(3480.0) - 220.0 * 120.0) < 1e-6
    assert abs(bursty.energy(7200.0) - 2 * bursty.energy(3600.0)) < 1e-6


def test_the_bench_energy_matches_the_fake_gpus_integral(tmp_path):
    # 1.2 simulated hours: an hourly checkpoint, an eval window, both rebuilt in `report`
    out = tmp_path / "figures.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--days", "0.05", "--gpus", "2",
                        "--rate", "2", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    figures = json.loads(out.read_text())
    # the GPUs' integral is the simulated time's, not the wall clock's few seconds
    assert figures["true_energy_j"] > 2 * 200.0 * 4000.0
    assert abs(figures["energy_error_pct"]) < 0.01
    assert figures["rebuild_equal"] and figures["windows_equal"]
    assert figures["steps"] > 8000
