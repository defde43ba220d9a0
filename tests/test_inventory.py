"""The monthly inventory (tracker/accounting/inventory.py, `energy-tracker inventory`): kWh,
tCO2e and GPU-hours per month x project x region equal the runs' own summaries, each run or
job counted once, a run across a month boundary split by its energy timeline."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import defaultdict
from contextlib import redirect_stdout
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from test_report_html import job_env  # noqa: F401
from test_report_index import two_process_job

from tracker import track
from tracker.accounting.inventory import (
    BASIS_ONE_MONTH,
    BASIS_START,
    BASIS_TIMELINE,
    discover,
    inventory,
    month_starts,
)
from tracker.cli import main


def _summary(d: Path) -> dict[str, Any]:
    return json.loads((d / "summary.json").read_text())


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def team(tmp_path, fake_gpu, fake_nvml, job_env, monkeypatch) -> dict[str, Any]:  # noqa: F811
    """Two roots: team-a with two runs (DE, PUE 1.2) and a 2-process job; team-b with one
    run (FR)."""
    job = two_process_job(fake_nvml, job_env, tmp_path / "team-a")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "ENERGY_TRACKER_NODE",
                "TORCHELASTIC_RESTART_COUNT"):
        monkeypatch.delenv(var, raising=False)
    runs = []
    for root, name, region in (("team-a", "a1", "DE"), ("team-a", "a2", "DE"),
                               ("team-b", "b1", "FR")):
        with track(name, sensors=fake_gpu, output_dir=tmp_path / root, region=region,
                   pue=1.2, cpu=False, ram=False, rate_hz=50) as run:
            time.sleep(0.2)
        runs.append(Path(run.run_dir))
    return {"a": tmp_path / "team-a", "b": tmp_path / "team-b", "job": job, "runs": runs}


def _expected(dirs: list[Path]) -> dict[tuple[str, str], dict[str, float]]:
    """(month, project) -> kWh and tCO2e summed straight from the summaries."""
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: {"kwh": 0.0, "t": 0.0})
    for d in dirs:
        s = _summary(d)
        month = s["started_utc"][:7]
        key = (month, d.parent.name)
        out[key]["kwh"] += s["facility_energy_kwh"]
        out[key]["t"] += s["emissions_kg"] / 1000
    return dict(out)


def test_inventory_csv_equals_the_summaries_each_counted_once(team, tmp_path):
    dirs = [*team["runs"], team["job"]]
    before = {str(d): _tree(d) for d in dirs}
    member = team["job"] / "node-a" / "rank0"
    out = tmp_path / "inv" / "inventory.csv"
    # team-a twice, and a member of its job on its own: still each run and the job once
    args = ["inventory", str(team["a"]), str(team["b"]), str(team["a"]), str(member),
            "--csv", str(out)]
    text = io.StringIO()
    with redirect_stdout(text):
        assert main(args) == 0
    rows = list(csv.DictReader(out.open()))
    got: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: {"kwh": 0.0, "t": 0.0})
    for r in rows:
        got[(r["month"], r["project"])]["kwh"] += float(r["facility_energy_kwh"])
        got[(r["month"], r["project"])]["t"] += float(r["emissions_tco2e"])
        assert r["factor_source"] and r["factor_year"] and r["factor_licence"], r
        assert r["split_basis"] == BASIS_ONE_MONTH
    want = _expected(dirs)
    assert set(got) == set(want)
    for k in want:
        assert got[k]["kwh"] == pytest.approx(want[k]["kwh"], rel=1e-6), k
        assert got[k]["t"] == pytest.approx(want[k]["t"], rel=1e-6), k
    # per region: team-a's DE runs, its job (WORLD, no region given), team-b's FR run
    regions = {(r["project"], r["region"]): int(r["entries"]) for r in rows}
    assert regions == {("team-a", "DE"): 2, ("team-a", "WORLD"): 1, ("team-b", "FR"): 1}
    de = next(r for r in rows if r["region"] == "DE")
    assert de["factor"].startswith("DE ") and "gCO2e/kWh" in de["factor"]
    # the PUE is in: facility energy, not IT energy
    it = sum(_summary(d)["energy_kwh"] for d in team["runs"][:2])
    assert float(de["facility_energy_kwh"]) == pytest.approx(1.2 * it, rel=1e-6)
    # GPU-hours: the GPUs' measured spans
    job_s = _summary(team["job"])
    # (a job's merged devices have no span: its members' have)
    spans = sum(d["end_s"] - d["start_s"] for m in team["job"].glob("node-*/rank*")
                for d in _summary(m)["devices"] if d["component"] == "gpu")
    assert spans > 0 and len(job_s["devices"]) == 2
    world = next(r for r in rows if r["region"] == "WORLD")
    assert float(world["gpu_hours"]) == pytest.approx(spans / 3600, rel=1e-4)
    # reading wrote nothing into any run or job directory
    assert {str(d): _tree(d) for d in dirs} == before
    assert "counted in the job" in text.getvalue()


def test_inventory_json_and_table(team):
    js = io.StringIO()
    with redirect_stdout(js):
        assert main(["inventory", str(team["a"]), "--json"]) == 0
    data = json.loads(js.getvalue())
    assert data["entries"] == 3 and "location-based" in data["basis"]
    assert all(f["source"] and f["year"] for r in data["rows"] for f in r["factors"])
    table = io.StringIO()
    with redirect_stdout(table):
        assert main(["inventory", str(team["a"])]) == 0
    assert "team-a" in table.getvalue() and "3 runs/jobs counted" in table.getvalue()


def test_index_page_shows_the_inventory(team):
    from tracker.report.index_page import write_index
    page = write_index(team["a"]).read_text()
    assert 'id="inventory"' in page and "Monthly inventory" in page
    kwh = sum(_summary(d)["facility_energy_kwh"] for d in [*team["runs"][:2], team["job"]])
    assert f'<td class="n">{kwh:.6g}</td>' in page


# -- a run across a month boundary ----------------------------------------------------------------
def _month_run(root: Path, name: str, start_wall: float, seconds: int, boundary_s: float,
               before_w: float, after_w: float, with_samples: bool = True) -> Path:
    """A run directory in the tracker's record format (run.json, samples.jsonl at 10 Hz,
    summary.json): one GPU at `before_w` until `boundary_s`, then `after_w`."""
    d = root / name
    d.mkdir(parents=True)
    dev = {"name": "gpu0", "component": "gpu", "method": "counter", "description": "g0"}
    grid = {"gco2_per_kwh": 300.0, "region_code": "XX", "source": "test table", "year": 2024,
            "licence": "CC0"}
    (d / "run.json").write_text(json.dumps({"schema": 1, "run_id": name, "name": name,
                                            "start_wall": start_wall, "devices": [dev],
                                            "grid": grid}))
    j = 0.0
    lines = []
    for k in range(seconds * 10 + 1):
        t = k / 10
        w = before_w if t < boundary_s else after_w
        j += w / 10 if k else 0.0
        lines.append(json.dumps({"t": t, "d": {"gpu0": {"w": w, "j": round(j, 6)}}}))
    if with_samples:
        (d / "samples.jsonl").write_text("\n".join(lines) + "\n")
    started = datetime.fromtimestamp(start_wall, timezone.utc).isoformat()
    summary = {"schema": 1, "run_id": name, "name": name, "status": "finished",
               "started_utc": started, "ended_utc": started, "duration_s": float(seconds),
               "energy_j": j,
               "energy_kwh": j / 3.6e6, "facility_energy_j": j, "facility_energy_kwh": j / 3.6e6,
               "pue": 1.0, "pue_source": "default", "emissions_kg": j / 3.6e6 * 0.3,
               "emissions_rate_kg_per_s": j / 3.6e6 * 0.3 / seconds, "carbon": {},
               "windows": [], "steps": {}, "notes": [], "degraded": [],
               "gco2_per_kwh": 300.0, "grid": grid,
               "devices": [dict(dev, energy_j=j, start_s=0.0, end_s=float(seconds),
                                mean_power_w=j / seconds, peak_power_w=after_w, status="ok")],
               "components": {"gpu": {"component": "gpu", "method": "counter", "energy_j": j,
                                      "mean_power_w": j / seconds, "peak_power_w": after_w,
                                      "devices": ["gpu0"], "status": "ok"}}}
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def test_a_run_across_months_is_split_by_its_energy_timeline(tmp_path):
    boundary = datetime(2025, 2, 1, tzinfo=timezone.utc).timestamp()
    # 200 s in January at 100 W, then 400 s in February at 400 W
    _month_run(tmp_path / "r", "cross", boundary - 200, 600, 200, 100.0, 400.0)
    # the same without a timeline: all of it goes to January, and the row says so
    _month_run(tmp_path / "r", "nolog", boundary - 200, 600, 200, 100.0, 400.0,
               with_samples=False)
    inv = inventory([tmp_path / "r"])
    rows = {(r.month, tuple(r.entries)): r for r in inv.rows}
    jan = next(r for r in inv.rows if r.month == "2025-01" and BASIS_TIMELINE in r.bases)
    feb = next(r for r in inv.rows if r.month == "2025-02")
    assert feb.bases == {BASIS_TIMELINE}
    total = _summary(tmp_path / "r" / "cross")["facility_energy_kwh"]
    assert jan.facility_energy_kwh + feb.facility_energy_kwh == pytest.approx(total + total)
    # cross: January holds 200 s x 100 W of its 180 kJ (one 0.1 s reading either side)
    cross_jan = 200 * 100 / 3.6e6
    nolog = total   # all of nolog in January
    assert jan.facility_energy_kwh == pytest.approx(cross_jan + nolog, rel=2e-3)
    assert feb.facility_energy_kwh == pytest.approx(total - cross_jan, rel=2e-3)
    assert jan.bases == {BASIS_TIMELINE, BASIS_START}
    # tCO2e follows the energy; GPU-hours follow the time (1/3 in January)
    assert feb.emissions_tco2e == pytest.approx(feb.facility_energy_kwh * 300 / 1e6, rel=1e-6)
    assert feb.gpu_hours == pytest.approx(400 / 3600, rel=1e-6)
    assert jan.gpu_hours == pytest.approx(200 / 3600 + 600 / 3600, rel=1e-6)
    assert len(rows) == 2


def test_month_starts():
    a = datetime(2024, 11, 30, 12, tzinfo=timezone.utc).timestamp()
    b = datetime(2025, 2, 1, tzinfo=timezone.utc).timestamp()
    got = [datetime.fromtimestamp(w, timezone.utc).strftime("%Y-%m-%d") for w in
           month_starts(a, b)]
    assert got == ["2024-12-01", "2025-01-01", "2025-02-01"]
    assert month_starts(a, a + 3600) == []


def test_a_damaged_run_is_noted_not_counted(tmp_path):
    d = _month_run(tmp_path / "r", "ok", 1.7e9, 10, 5, 100.0, 100.0)
    bad = tmp_path / "r" / "broken"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    entries, _ = discover([tmp_path / "r"])
    assert [e.error is not None for e in entries] == [True, False]   # broken, ok
    inv = inventory([tmp_path / "r"])
    assert inv.entries == 1
    assert sum(r.facility_energy_kwh for r in inv.rows) == pytest.approx(
        _summary(d)["facility_energy_kwh"])
    assert any("broken: unreadable, not counted" in n for n in inv.notes), inv.notes


def test_live_intensity_emissions_follow_their_periods(tmp_path):
    """A run with live intensity (two periods: 100 g/kWh in January, 500 in February): each
    month's tCO2e is its periods' emissions, not the run's average times its energy."""
    boundary = datetime(2025, 2, 1, tzinfo=timezone.utc).timestamp()
    d = _month_run(tmp_path / "r", "live", boundary - 200, 600, 200, 100.0, 400.0)
    s = _summary(d)
    e_jan, e_feb = 200 * 100.0, s["energy_j"] - 200 * 100.0
    g_jan, g_feb = e_jan / 3.6e6 * 100, e_feb / 3.6e6 * 500
    s["carbon"] = {"parts": [
        {"start_wall": boundary - 200, "end_wall": boundary, "energy_j": e_jan,
         "gco2_per_kwh": 100.0, "emissions_g": g_jan},
        {"start_wall": boundary, "end_wall": boundary + 400, "energy_j": e_feb,
         "gco2_per_kwh": 500.0, "emissions_g": g_feb}]}
    s["emissions_kg"] = (g_jan + g_feb) / 1000
    (d / "summary.json").write_text(json.dumps(s))
    rows = {r.month: r for r in inventory([tmp_path / "r"]).rows}
    assert rows["2025-01"].emissions_tco2e == pytest.approx(g_jan / 1e6, rel=1e-9)
    assert rows["2025-02"].emissions_tco2e == pytest.approx(g_feb / 1e6, rel=1e-9)
    # (the energy split alone would have put a larger share of the emissions in January)
    assert rows["2025-01"].emissions_tco2e < (g_jan + g_feb) / 1e6 * (
        rows["2025-01"].facility_energy_kwh / (s["facility_energy_kwh"]))
