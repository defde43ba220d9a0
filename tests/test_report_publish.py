"""The report page's "publish" section (the model card's co2_eq_emissions block and the LaTeX
statement of tracker/publish, with copy buttons), and the same embodied and water estimates
in what MLflow/W&B are given (exporters/base.py)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import offline_browser, offline_page
from publish_helpers import h100_run, summary_of

from tracker.exporters.base import summary_metrics, summary_params
from tracker.publish.card import card_metadata, metadata_yaml
from tracker.publish.facts import facts_from_dir
from tracker.publish.statement import render as statement
from tracker.report.html import write_html


def block(page: str, key: str) -> str:
    """The text of a publish block (<pre id=key>), as the browser shows it."""
    m = re.search(rf'<pre id="{key}">(.*?)</pre>', page, re.S)
    assert m, f"no {key} block in the page"
    return html.unescape(m.group(1))


def test_the_page_carries_the_card_and_the_statement_of_the_summary(tmp_path, fake_h100):
    run = h100_run(tmp_path, wue=1.8)
    page = write_html(run).read_text()
    assert '<section id="publish">' in page and 'href="#publish"' in page
    card = block(page, "pub-card")
    co2 = yaml.safe_load(card)["co2_eq_emissions"]
    s = summary_of(run)
    assert co2["emissions"] == pytest.approx(s["emissions_kg"] * 1000, rel=5e-3)
    assert co2["energy_kwh"] == pytest.approx(s["facility_energy_kwh"], rel=1e-5)
    assert co2["water_litres"] == pytest.approx(s["facility_energy_kwh"] * 1.8, rel=1e-5)
    assert co2["water_method"].startswith("estimate")
    assert co2["embodied_method"].startswith("estimate")
    # the very text `energy-tracker card` writes: one code path, not a copy of it
    facts = facts_from_dir(run)
    assert card == metadata_yaml(card_metadata(facts))
    assert block(page, "pub-latex") == statement(facts, "latex")
    assert "\\begin{tabularx}" in block(page, "pub-latex")


def test_without_energy_there_is_nothing_to_publish(tmp_path, fake_h100):
    from tracker.report.html import collect, render_page
    run = h100_run(tmp_path)
    data = collect(run)
    data.summary = dict(data.summary, energy_j=None)
    assert '<section id="publish">' not in render_page(data)


@pytest.mark.parametrize("clipboard", [True, False])
def test_the_copy_button_copies_or_selects_the_card(tmp_path, fake_h100, clipboard):
    """With the clipboard API: the card's YAML is on the clipboard. Without it (a browser that
    has none for a file:// page): the text is selected, for Ctrl+C."""
    run = h100_run(tmp_path, wue=1.8)
    out = write_html(run)
    page_text = out.read_text()
    expected = block(page_text, "pub-card")
    no_clipboard = ("Object.defineProperty(Navigator.prototype, 'clipboard', "
                    "{get: () => undefined})")
    with offline_browser() as browser, offline_page(
            browser, out, permissions=("clipboard-read", "clipboard-write") if clipboard else (),
            init_script=None if clipboard else no_clipboard) as tab:
        page = tab.page
        assert page.locator("#publish h2").inner_text() == "Publish"
        page.click("button.et-copy[data-copy='pub-card']")
        page.wait_for_function(
            "document.querySelector(\"[data-copy='pub-card'] + .et-copied\").textContent")
        got: dict[str, Any] = page.evaluate("""async () => {
            let clip = null;
            try { clip = await navigator.clipboard.readText(); } catch (e) { clip = null; }
            return {clip, selected: String(window.getSelection()),
                    note: document.querySelector("[data-copy='pub-card'] + .et-copied")
                          .textContent};
        }""")
    assert tab.errors == [] and tab.blocked == [] and tab.requests == [tab.url]
    if clipboard:
        assert got["note"] == "copied" and got["clip"] == expected, got
        copied = got["clip"]
    else:   # the fallback: selected (and copied by execCommand where the browser allows it)
        # (a selection of a <pre> reads without its last newline)
        assert got["clip"] is None and got["selected"] == expected.rstrip("\n"), got
        assert got["note"] in ("copied", "selected: press Ctrl+C to copy"), got
        copied = got["selected"]
    co2 = yaml.safe_load(copied)["co2_eq_emissions"]
    assert co2["emissions"] == pytest.approx(summary_of(run)["emissions_kg"] * 1000, rel=5e-3)


def live_run(tmp_path: Path, **options: Any) -> tuple[Path, Any]:
    """h100_run's run, with the Summary object the run hands its exporters at stop."""
    import time

    import tracker
    opts = dict(region="DE", output_dir=tmp_path / "runs", cpu=False, ram=False, pue=1.2,
                report_html=False, rate_hz=50)
    opts.update(options)
    with tracker.track("publish-test", **opts) as r:
        time.sleep(0.3)
    return Path(r.run_dir), r.summary


def test_mlflow_and_wandb_get_the_estimates_the_card_states(tmp_path, fake_h100):
    run, summary = live_run(tmp_path, wue=1.8)
    co2 = card_metadata(facts_from_dir(run))["co2_eq_emissions"]
    metrics, params = summary_metrics(summary), summary_params(summary)
    assert metrics["energy/embodied_estimate_g"] == co2["embodied_emissions_g"] > 0
    assert metrics["energy/water_estimate_l"] == co2["water_litres"] > 0
    assert params["energy/embodied_method"] == co2["embodied_method"]
    assert params["energy/water_method"] == co2["water_method"]
    assert "estimate" in params["energy/embodied_method"]
    # estimates beside the operational emissions, never added to them
    assert metrics["energy/emissions_kg"] == pytest.approx(summary_of(run)["emissions_kg"])


def test_no_wue_no_water_parameter(tmp_path, fake_h100):
    _, summary = live_run(tmp_path)
    metrics, params = summary_metrics(summary), summary_params(summary)
    assert "energy/water_estimate_l" not in metrics and "energy/water_method" not in params
    assert metrics["energy/embodied_estimate_g"] > 0


def test_an_unknown_gpu_gets_no_embodied_number(tmp_path, fake_nvml):
    from conftest import UUIDS, Constant, FakeGPU
    fake_nvml(FakeGPU(name="Imaginary Accelerator 9000", uuid=UUIDS[0],
                      profile=Constant(200.0)))
    run, summary = live_run(tmp_path)
    co2 = card_metadata(facts_from_dir(run))["co2_eq_emissions"]
    metrics = summary_metrics(summary)
    assert metrics.get("energy/embodied_estimate_g") == co2.get("embodied_emissions_g")
