"""`energy-tracker card`: the Hub's co2_eq_emissions metadata from a real run, checked with
huggingface_hub's own ModelCard parser, and --update leaving the rest of a card byte for byte."""

from __future__ import annotations

import pytest
from publish_helpers import h100_run, summary_of, tree_state

from tracker import __version__
from tracker.cli import main

hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub is needed to parse cards")

EXISTING = ("---\n"
            "license: mit\n"
            "# a comment the user wrote\n"
            "tags:\n"
            "- text-generation\n"
            "- energy\n"
            "co2_eq_emissions:\n"
            "  emissions: 999.0\n"
            "  source: hand-copied\n"
            "datasets:\n"
            "  - wikitext\n"
            "---\n"
            "\n"
            "# My model\n"
            "\n"
            "Some text with --- dashes and `co2_eq_emissions:` in it.\n"
            "---\n"
            "Trailing bytes without a newline")


def test_card_metadata_parses_and_equals_the_summary(tmp_path, fake_h100, capsys):
    run = h100_run(tmp_path)
    before = tree_state(run)
    assert main(["card", str(run), "--training-type", "fine-tuning"]) == 0
    out = capsys.readouterr().out
    data = hub.ModelCard(out + "\nbody\n").data.to_dict()
    co2 = data["co2_eq_emissions"]
    s = summary_of(run)
    assert co2["emissions"] == pytest.approx(s["emissions_kg"] * 1000, rel=5e-3)
    assert co2["training_type"] == "fine-tuning"
    assert co2["geographical_location"] == "Germany (DE)"
    assert co2["hardware_used"] == "1 × NVIDIA H100 80GB HBM3"
    assert co2["source"].startswith(f"trainjoule {__version__} ")
    assert "gpu: counter" in co2["source"]
    assert co2["energy_kwh"] == pytest.approx(s["facility_energy_kwh"], rel=1e-5)
    assert co2["grid_year"] == s["grid"]["year"] and co2["grid_source"] == s["grid"]["source"]
    low, high = co2["emissions_range_g"]
    assert low < co2["emissions"] < high
    assert "water_litres" not in co2            # no WUE given: no water
    assert co2["embodied_method"].startswith("estimate")
    assert tree_state(run) == before            # a reader writes nothing into the run


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_update_keeps_the_rest_of_the_card_byte_for_byte(tmp_path, fake_h100, newline):
    run = h100_run(tmp_path)
    card = tmp_path / "README.md"
    original = EXISTING.replace("\n", newline)
    card.write_bytes(original.encode())
    before = tree_state(run)
    assert main(["card", str(run), "--update", str(card)]) == 0
    new = card.read_bytes().decode()
    # the body, from the closing '---' on, is untouched
    close = original.index(f"{newline}---{newline}", 3)
    assert new.endswith(original[close:])
    # every other front-matter line is kept, in order; the old co2 block is gone
    kept = [ln for ln in original[:close].split(newline)
            if ln and not ln.startswith(("co2_eq_emissions", "  emissions", "  source"))]
    front = new[:new.index(f"{newline}---{newline}", 3)].split(newline)
    assert [ln for ln in front if ln in kept] == kept
    assert "999.0" not in new and "hand-copied" not in new
    loaded = hub.ModelCard.load(card)
    co2 = loaded.data.co2_eq_emissions
    assert co2["emissions"] == pytest.approx(summary_of(run)["emissions_kg"] * 1000, rel=5e-3)
    assert loaded.data.license == "mit" and loaded.data.tags == ["text-generation", "energy"]
    # again: replaced, not added twice
    assert main(["card", str(run), "--update", str(card)]) == 0
    assert card.read_bytes().decode() == new
    assert tree_state(run) == before


def test_update_a_card_without_front_matter(tmp_path, fake_h100):
    run = h100_run(tmp_path)
    card = tmp_path / "README.md"
    card.write_text("# Just a title\n")
    assert main(["card", str(run), "--update", str(card)]) == 0
    text = card.read_text()
    assert text.startswith("---\nco2_eq_emissions:\n") and text.endswith("---\n# Just a title\n")
    assert hub.ModelCard.load(card).data.co2_eq_emissions["hardware_used"]


def test_bad_input_is_one_line_exit_2(tmp_path, fake_h100, capsys):
    run = h100_run(tmp_path)
    capsys.readouterr()          # the run's own end-of-run block on stderr
    cases = [["card", str(tmp_path / "nope")],
             ["card", str(run), "--training-type", "pretraining"],
             ["card", str(run), "--wue", "-1"],
             ["card", str(run), "--utilisation", "1.5"],
             ["card", str(run), "--format", "md", "--update", str(tmp_path / "R.md")],
             ["card", str(tmp_path)]]                 # a directory without a summary
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("energy-tracker: error:") and "\n" not in err, (argv, err)
    assert not (tmp_path / "R.md").exists()
