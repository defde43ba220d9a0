"""Embodied figures: the bundled CSV is what scripts/build_embodied.py builds from the quoted
sources (no figure without a citation); amortisation; the new options; water in the CSV row."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

from tracker.config import TrackerConfig
from tracker.embodied import estimate_embodied, load_figures
from tracker.embodied.estimate import SECONDS_PER_YEAR
from tracker.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _build_module():
    spec = importlib.util.spec_from_file_location("build_embodied",
                                                  ROOT / "scripts" / "build_embodied.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["build_embodied"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_bundled_csv_is_built_from_the_quoted_sources(tmp_path):
    build = _build_module()
    out = tmp_path / "embodied.csv"
    build.build(build.SOURCE, out)
    assert out.read_text() == (ROOT / "tracker/embodied/data/embodied.csv").read_text()
    for fig in load_figures():
        assert fig.source and fig.locator and fig.licence and 1990 <= fig.year <= 2100


@pytest.mark.parametrize("column", ["source", "year", "licence", "quote"])
def test_a_figure_without_its_citation_stops_the_build(tmp_path, column):
    build = _build_module()
    rows = list(csv.DictReader(build.SOURCE.open(newline="")))
    rows[0][column] = ""
    src = tmp_path / "figures.csv"
    with src.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueError, match=column):
        build.build(src, tmp_path / "out.csv")


def test_a_quote_that_does_not_hold_the_number_stops_the_build(tmp_path):
    build = _build_module()
    rows = list(csv.DictReader(build.SOURCE.open(newline="")))
    rows[0]["quoted_value"] = "151"
    src = tmp_path / "figures.csv"
    with src.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueError, match="quote does not contain"):
        build.build(src, tmp_path / "out.csv")


def test_amortisation_over_lifetime_and_utilisation():
    e = estimate_embodied({"NVIDIA A100-SXM4-80GB": 8}, duration_s=3600.0)
    gpu = next(p for p in e.parts if p.component == "gpu")
    server = next(p for p in e.parts if p.component == "server")
    used_s = 6 * SECONDS_PER_YEAR * 0.85
    assert gpu.kg == pytest.approx(8 * 150 * 3600 / used_s)
    assert server.count == pytest.approx(1.0) and server.kg == pytest.approx(2500 * 3600 / used_s)
    short = estimate_embodied({"NVIDIA A100-SXM4-80GB": 8}, duration_s=3600.0,
                              lifetime_years=3.0)
    assert short.kg == pytest.approx(e.kg * 2) and short.lifetime_source == "user"
    # an H100 PCIe is not an HGX board: no published figure, not the SXM one
    pcie = estimate_embodied({"NVIDIA H100 PCIe": 1}, duration_s=60.0)
    assert pcie.unknown == ("NVIDIA H100 PCIe",)
    # a CPU-only run: a socket and the RAM, no server share
    cpu = estimate_embodied({}, duration_s=3600.0, ram_gb=64.0)
    assert {p.component for p in cpu.parts} == {"cpu", "ram"}
    # the user's own figure replaces the published one
    mine = estimate_embodied({"NVIDIA A100-SXM4-80GB": 1}, duration_s=3600.0,
                             user_figures={"A100": 300.0})
    assert next(p for p in mine.parts if p.component == "gpu").kg == pytest.approx(
        2 * next(p for p in estimate_embodied({"NVIDIA A100-SXM4-80GB": 1},
                                              duration_s=3600.0).parts
                 if p.component == "gpu").kg)


def test_options_are_validated_and_recorded(tmp_path):
    c = TrackerConfig.from_options("x", output_dir=tmp_path, wue=1.1, embodied={"H100": 200},
                                   hardware_lifetime_years=4, hardware_utilisation=0.9)
    m = c.manifest()
    assert (m["wue"], m["embodied"], m["hardware_lifetime_years"],
            m["hardware_utilisation"]) == (1.1, {"H100": 200.0}, 4.0, 0.9)
    assert TrackerConfig.from_options("x", output_dir=tmp_path).manifest()["embodied"] is True
    for bad, words in [({"wue": -1}, "wue=-1 is out of range"),
                       ({"wue": True}, "wue must be"),
                       ({"hardware_utilisation": 0}, "out of range"),
                       ({"hardware_lifetime_years": 100}, "out of range"),
                       ({"embodied": "yes"}, "embodied must be"),
                       ({"embodied": {"H100": -1}}, "out of range")]:
        with pytest.raises(ConfigError, match=words):
            TrackerConfig.from_options("x", output_dir=tmp_path, **bad)


def test_emissions_row_has_water_only_with_a_wue(tmp_path, fake_h100):
    from publish_helpers import h100_run

    h100_run(tmp_path / "a")
    h100_run(tmp_path / "b", wue=2.0)
    rows = {}
    for k in ("a", "b"):
        with (tmp_path / k / "runs" / "emissions.csv").open(newline="") as f:
            rows[k] = next(csv.DictReader(f))
    assert float(rows["a"]["water_consumed"]) == 0.0
    assert "water_consumed" in rows["a"]["not_measured"].split(";")
    b = rows["b"]
    assert float(b["wue"]) == 2.0 and "water_consumed" not in b["not_measured"].split(";")
    assert float(b["water_consumed"]) == pytest.approx(float(b["energy_consumed"]) * 2.0)
