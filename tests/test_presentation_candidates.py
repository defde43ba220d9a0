"""One rule picks the countries a run is compared with: the what-if's cleanest country and the
advice's cleaner grid are the same place, and an implausible 0.0 is never either."""

from __future__ import annotations

import json

from tracker import track
from tracker.accounting.advice import findings
from tracker.carbon import all_regions, candidate_countries, cleanest_and_dirtiest, lookup
from tracker.carbon.candidates import cloud_countries, lifecycle_floor, why_not_candidate
from tracker.carbon.mix import technologies
from tracker.cli import main

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2, report_html=False)


def test_a_value_below_every_technologys_lifecycle_median_is_no_candidate():
    floor = min(t.gco2_per_kwh for t in technologies().values())
    assert lifecycle_floor() == floor
    below = [r for r in all_regions() if r.kind == "country" and r.gco2_per_kwh < floor]
    assert below, "the bundled table has a 0.0 country (Central African Republic)"
    for r in below:
        assert "below the lowest lifecycle median" in (why_not_candidate(r) or ""), r.code
    assert all(r.gco2_per_kwh >= floor for r in candidate_countries())


def test_candidates_are_countries_with_a_cloud_region_lowest_first():
    found = candidate_countries()
    assert [r.gco2_per_kwh for r in found] == sorted(r.gco2_per_kwh for r in found)
    assert {r.code for r in found} <= cloud_countries()
    assert all(r.kind == "country" for r in found)
    # hosts read off the cloud tables: AWS eu-central-1 (DE), GCP europe-north2 (SE)
    assert {"DE", "SE", "US"} <= cloud_countries()
    # a country without a cloud region is said to be one
    assert "no public cloud region" in (why_not_candidate(lookup("LS")) or "")
    assert "not a country" in (why_not_candidate(lookup("US-CA")) or "")
    assert cleanest_and_dirtiest() == (found[0], found[-1])


def test_the_what_if_and_the_advice_name_the_same_cleanest_country(clocked_h100, manual_clock,
                                                                   tmp_path, capsys):
    with track("moved", output_dir=tmp_path, region="DE", **FAST) as run:
        manual_clock.sleep(2.0)
    advice = next(f for f in run.summary.advice if f["kind"] == "cleaner_grid")
    capsys.readouterr()
    assert main(["report", str(run.run_dir), "--compare-regions", "FR", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    best = data["compare_extremes"]["cleanest country"]
    assert best["code"] == advice["numbers"]["region"] == candidate_countries()[0].code
    assert best["gco2_per_kwh"] >= lifecycle_floor() > 0.0
    assert data["compare_extremes"]["dirtiest country"]["code"] == candidate_countries()[-1].code
    # the text says which countries the bounds are taken from
    assert main(["report", str(run.run_dir), "--compare-regions", "FR"]) == 0
    assert "among countries with a cloud region" in capsys.readouterr().out


def test_the_advice_skips_the_runs_own_country():
    best = candidate_countries()[0]
    summary = {"energy_j": 3.6e6, "facility_energy_kwh": 1.0, "grid": {"region_code": best.code},
               "gco2_per_kwh": best.gco2_per_kwh + 200.0}
    (finding,) = [f for f in findings(summary) if f["kind"] == "cleaner_grid"]
    assert finding["numbers"]["region"] == candidate_countries()[1].code


def test_the_html_report_uses_the_same_bounds(clocked_h100, manual_clock, tmp_path):
    from tracker.report.html import write_html
    with track("page", output_dir=tmp_path, region="DE", **FAST) as run:
        manual_clock.sleep(1.0)
    page = write_html(run.run_dir, tmp_path / "r.html").read_text(encoding="utf-8")
    best, worst = cleanest_and_dirtiest()
    assert f"{best.code} (cleanest country)" in page and f"{worst.code} (dirtiest country)" in page
    zero = [r.code for r in all_regions() if r.kind == "country" and r.gco2_per_kwh == 0.0]
    assert zero and all(f"{code} (cleanest country)" not in page for code in zero)
