"""What a person reads: the PUE says what its default means, energies come in the unit that fits,
a run without steps says how to get a breakdown, and `report ROOT` shows whole names."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout

import pytest

from tracker import track
from tracker.report.terminal import NAME_COLUMN_MAX, render, runs_table
from tracker.summary import NO_BREAKDOWN
from tracker.units import J_PER_KWH, J_PER_WH, energy_text

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2, report_html=False)


@pytest.mark.parametrize("j,text", [
    (0.0, "0 J"), (519.0, "519 J"), (3599.0, "3599 J"), (J_PER_WH, "1 Wh"),
    (0.14 * J_PER_KWH, "140 Wh"), (999.9 * J_PER_WH, "1000 Wh"), (3.2 * J_PER_KWH, "3.2 kWh"),
    (1.5e3 * J_PER_KWH, "1.5 MWh"), (-519.0, "-519 J"), (float("nan"), "n/a"),
])
def test_energy_text_fits_the_magnitude_and_never_uses_an_exponent(j, text):
    assert energy_text(j) == text


def test_end_block_keeps_importing_energy_text():
    from tracker import end_block
    assert end_block.energy_text is energy_text


def test_the_summary_of_an_untouched_script(clocked_h100, manual_clock, tmp_path, capsys):
    """No pue=, no steps, no windows: the PUE line says what the default means and how to
    change it; energies in J, not 0.000... kWh; no "other 100 %"."""
    with track("plain", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(2.0)                       # 300 W x 2 s = 600 J
    s = run.summary
    assert set(s.breakdown) >= {"other"}
    text = s.format()
    assert (f"PUE 1.0 (default: IT energy only; pass pue= or ENERGY_TRACKER_PUE) -> facility "
            f"{energy_text(s.facility_energy_j)}") in text
    assert f"total (IT) {energy_text(s.energy_j)}" in text and energy_text(s.energy_j) == "600 J"
    assert not re.search(r"\d\.\d{6} kWh", text), text              # no 0.000167 kWh
    assert "other 100" not in text
    assert f"  where it went: {NO_BREAKDOWN}" in text
    for hint in ("run.steps(", "run.step(", "run.window(", "Lightning"):
        assert hint in NO_BREAKDOWN
    # the terminal view draws no "other" bar either
    assert "where the energy went" not in render(s.to_dict(), run.run_dir)


def test_a_given_pue_and_a_run_with_steps(clocked_h100, manual_clock, tmp_path):
    with track("steps", output_dir=tmp_path, pue=1.25, **FAST) as run:
        for _ in run.steps(range(5)):
            manual_clock.sleep(0.2)
    text = run.summary.format()
    assert "PUE 1.25 (user)" in text
    assert "where it went: steps" in text and NO_BREAKDOWN not in text
    assert "where the energy went" in render(run.summary.to_dict(), run.run_dir)


def _row(name: str, kwh: float | None = 1e-4) -> dict:
    return {"run_dir": "/x", "kind": "run", "name": name, "status": "finished",
            "started_utc": "2026-01-01T00:00:00+00:00", "duration_s": 1.5, "energy_kwh": kwh,
            "emissions_kg": 1e-6, "world_size": None, "nodes": None, "methods": {"gpu": "counter"}}


def test_report_root_shows_whole_names():
    names = ["multigpu_torchrun_training", "a", "x" * (NAME_COLUMN_MAX + 12)]
    lines = runs_table([_row(n) for n in names] + [_row("none", None)]).splitlines()
    for name in names:
        assert any(re.search(rf"\s{re.escape(name)}(\s|$)", line) for line in lines), name
    # the columns line up: every figure starts where the header's "status" does
    at = lines[0].index("status")
    figures = [line for line in lines[1:] if "finished" in line]
    assert len(figures) == 4 and all(line.index("finished") == at for line in figures)
    # the over-long name gets a line of its own, its figures under their columns
    long_at = next(i for i, line in enumerate(lines) if names[2] in line)
    assert "finished" not in lines[long_at] and lines[long_at + 1].lstrip().startswith("finished")
    assert energy_text(1e-4 * J_PER_KWH) in lines[1] and "n/a" in lines[-1]


def test_report_root_on_the_command_line(clocked_h100, manual_clock, tmp_path):
    from tracker.cli import main
    name = "multigpu_torchrun_training_with_a_long_name"
    with track(name, output_dir=tmp_path, **FAST):
        manual_clock.sleep(1.0)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["report", str(tmp_path)]) == 0
    assert f" {name} " in out.getvalue() and "300 J" in out.getvalue()
