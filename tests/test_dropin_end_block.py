"""One short block on stderr at the end of every tracked run: energy, emissions, methods, grid,
the run directory and the report; silenced by quiet=True / ENERGY_TRACKER_QUIET=1; once per
job (by the process that ends it) and once under `energy-tracker run`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracker import track
from tracker.end_block import end_block, energy_text, mass_text

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2, report_html=False)
HEAD = "energy-tracker: "


def blocks(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(HEAD)]


def test_a_run_prints_one_short_block(clocked_h100, manual_clock, tmp_path, capsys):
    with track("bert", output_dir=tmp_path, region="DE", pue=1.2, **FAST) as run:
        manual_clock.sleep(2.0)                       # 300 W x 2 s = 600 J
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(blocks(err)) == 1 and len(lines) <= 6, err
    s = run.summary
    assert lines[0] == (f"energy-tracker: run 'bert' finished in 2.0 s: {energy_text(s.energy_j)}"
                        f" IT, PUE 1.2 -> {energy_text(s.facility_energy_j)} facility")
    assert energy_text(s.energy_j) == "600 J"
    assert f"emissions {mass_text(s.emissions_kg)} CO2e at {s.gco2_per_kwh:.0f} gCO2e/kWh (DE: " \
        in lines[1]
    assert lines[2] == "  methods: gpu counter"
    assert f"  run directory: {run.run_dir}" in lines
    assert f"  report: energy-tracker report {run.run_dir}" in lines   # report_html=False


def test_units_fit_the_magnitude():
    assert [energy_text(j) for j in (519.0, 3600.0 * 0.14, 3600.0 * 1.0, 3.6e6 * 3.2, 3.6e9)] \
        == ["519 J", "504 J", "1 Wh", "3.2 kWh", "1 MWh"]
    assert [mass_text(kg) for kg in (5e-6, 0.0123, 4.5, 2500.0)] == ["5 mg", "12.3 g", "4.5 kg",
                                                                     "2.5 t"]


@pytest.mark.parametrize("how", ["option", "env"])
def test_quiet_silences_it(clocked_h100, manual_clock, tmp_path, capsys, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("ENERGY_TRACKER_QUIET", "1")
    with track("hush", output_dir=tmp_path, **FAST, **({"quiet": True} if how == "option"
                                                         else {})) as run:
        manual_clock.sleep(0.5)
    assert blocks(capsys.readouterr().err) == []
    assert run.summary.format().startswith(HEAD)     # the full text is still there


def test_a_job_prints_once_from_the_process_that_ends_it(fake_nvml, monkeypatch, tmp_path,
                                                        capsys):
    from fakes.fake_nvml import UUIDS, Constant, FakeGPU

    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)))
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks"))
    for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB"):
        monkeypatch.delenv(var, raising=False)

    def as_rank(rank: int) -> None:
        for k, v in {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": 2, "LOCAL_WORLD_SIZE": 2,
                     "ENERGY_TRACKER_NODE": "node-a"}.items():
            monkeypatch.setenv(k, str(v))

    as_rank(0)
    a = track("a", job="blk", output_dir=tmp_path, job_timeout_s=0, **FAST).start()
    as_rank(1)
    b = track("b", job="blk", output_dir=tmp_path, job_timeout_s=0, **FAST).start()
    a.stop()                                          # b still runs: a does not end the job
    assert blocks(capsys.readouterr().err) == []
    b.stop()                                          # the last one ends it, and prints it
    err = capsys.readouterr().err
    (head,) = blocks(err)
    assert head.startswith("energy-tracker: job ") and "(2 ranks on 1 node)" in head
    assert f"  job directory: {b._job.job_dir}" in err.splitlines()


def test_energy_tracker_run_prints_exactly_one_block(tmp_path):
    """The command's block; the script joined to its run (`with track()`) prints none."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import time
        from tracker import track
        with track("inner", cpu=False, ram=False) as run:
            for _ in run.steps(range(5)):
                time.sleep(0.01)
        print("trained", flush=True)
    """))
    env = dict(os.environ, PYTHONPATH=str(ROOT), ENERGY_TRACKER_REPORT_HTML="0")
    env.pop("ENERGY_TRACKER_QUIET", None)
    p = subprocess.run([sys.executable, "-m", "tracker", "run", "--output-dir",
                        str(tmp_path / "runs"), "--no-status", "--", sys.executable,
                        str(script)], capture_output=True, text=True, env=env, timeout=120,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "trained" in p.stdout
    (head,) = blocks(p.stderr)
    assert head.startswith("energy-tracker: run 'inner' finished"), p.stderr
    (run_dir,) = [d for d in (tmp_path / "runs").iterdir() if d.is_dir()
                  and not d.name.startswith(".")]
    assert f"  run directory: {run_dir}" in p.stderr.splitlines()
    assert len(p.stderr.strip().splitlines()) <= 6, p.stderr


def test_the_block_of_a_summary_without_energy():
    from tracker.summary import Summary
    s = Summary(run_id="r", name="n", status="failed", started_utc="x", ended_utc=None,
                duration_s=1.0, devices=(), components={}, energy_j=None, pue=1.0,
                pue_source="default", facility_energy_j=None, emissions_kg=None,
                emissions_rate_kg_per_s=None, gco2_per_kwh=None, grid={}, carbon={},
                windows=(), steps={}, notes=(), degraded=(), run_dir=None)
    assert end_block(s) == "energy-tracker: run 'n' failed in 1.0 s: nothing could be measured"
