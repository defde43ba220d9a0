"""Options declared once (issue 19 item 3, issue 22 item 4): TrackerConfig's fields are the
only place an option is written; the signatures, the type checks, the CLI flags of `run` and
docs/options.md are derived from them."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from tracker import ConfigError, Tracker, track
from tracker.config import OPTIONS, TrackerConfig, given_options

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "scripts" / "gen_options_doc.py"

# every flag `energy-tracker run` had before the flags were generated: each still works
LEGACY_FLAGS = {"--region": "region", "--gco2-per-kwh": "gco2_per_kwh",
                "--live-intensity": "live_intensity", "--pue": "pue", "--rate": "rate_hz",
                "--output-dir": "output_dir", "--cpu-tdp": "cpu_tdp_w",
                "--prometheus-port": "prometheus_port", "--grid-year": "grid_year",
                "--log-to": "log_to", "--emissions-csv": "emissions_csv", "--job": "job"}


def _run_parser() -> argparse.ArgumentParser:
    from tracker.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def test_every_option_field_is_declared_and_nothing_else_is():
    names = [f.name for f in dataclasses.fields(TrackerConfig)]
    declared = [n for n in names if n in OPTIONS]
    assert declared == list(OPTIONS)                      # the fields' order is the options'
    assert set(names) - set(OPTIONS) == {"name", "sources", "environ"}
    for f in dataclasses.fields(TrackerConfig):
        if f.name in OPTIONS:
            assert OPTIONS[f.name].default == f.default
            assert OPTIONS[f.name].help.strip(), f.name


@pytest.mark.parametrize("func", [Tracker, track], ids=["Tracker", "track"])
def test_the_signature_is_derived_from_the_declaration(func):
    params = inspect.signature(func).parameters
    assert list(params) == ["name", *OPTIONS]
    for opt in OPTIONS.values():
        p = params[opt.name]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY
        assert p.default == opt.default and p.annotation == opt.accepts
    assert not isinstance(params["pue"].annotation, str)   # a type, not a string to evaluate
    assert "pue: power usage effectiveness" in (Tracker.__doc__ or "")


def test_the_callbacks_take_the_options_as_typed_keywords():
    from tracker.integrations.lightning import EnergyCallback, PLEnergyCallback

    for cls in (EnergyCallback, PLEnergyCallback):
        params = inspect.signature(cls).parameters
        assert {"project_after", "job_metrics", *OPTIONS} <= set(params)
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        assert params["region"].annotation == OPTIONS["region"].accepts
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed: the Hugging Face callback is not checked")
    from tracker.integrations.huggingface import EnergyCallback as HFCallback

    params = inspect.signature(HFCallback).parameters
    assert {"project_after_steps", "model_card", *OPTIONS} <= set(params)
    assert params["output_dir"].annotation == OPTIONS["output_dir"].accepts


def test_type_checks_and_bounds_come_from_the_declaration(tmp_path):
    """Each declared `what` and bound is what a bad value is told."""
    checked = [o for o in OPTIONS.values() if o.what is not None]
    assert len(checked) > 20
    for opt in checked:
        with pytest.raises(ConfigError, match=f"^{opt.name} must be"):
            TrackerConfig.from_options("x", **{"output_dir": tmp_path, opt.name: object()})
    for opt in (o for o in OPTIONS.values() if o.bounds is not None):
        low, high, _ = opt.bounds
        with pytest.raises(ConfigError, match=rf"{opt.name}=.* is out of range \[{low:g}, "):
            TrackerConfig.from_options("x", **{"output_dir": tmp_path, opt.name: high * 2 + 1})


def test_a_misspelt_option_of_a_callback_names_the_closest(tmp_path):
    from tracker.integrations.lightning import EnergyCallback

    with pytest.raises(ConfigError, match=r"unknown option 'pu'.*did you mean pue"):
        EnergyCallback(pu=1.2, output_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"pue=0.5 is out of range"):
        EnergyCallback(pue=0.5, output_dir=tmp_path)


def test_parameters_left_at_their_default_are_not_given():
    """jsonargparse passes every parameter; its defaults must not count as arguments."""
    everything = {o.name: o.default for o in OPTIONS.values()}
    assert given_options(everything) == {}
    got = given_options(dict(everything, region="DE", rate_hz=5.0, cpu=False,
                             log_every_steps=None, emissions_csv=1))
    assert got == {"region": "DE", "rate_hz": 5.0, "cpu": False, "log_every_steps": None,
                   "emissions_csv": 1}   # 1 is not True: the validator will say so


def test_the_run_flags_are_generated_and_every_old_flag_still_works():
    parser = _run_parser()
    dests = {s: a.dest for a in parser._actions for s in a.option_strings}
    for flag, option in LEGACY_FLAGS.items():
        assert dests[flag] == option
    for opt in OPTIONS.values():
        if opt.cli is not None:
            assert dests[opt.cli] == opt.name
    assert {"--name", "--no-status", "--no-cpu", "--no-report-html"} <= set(dests)


def test_the_run_flags_are_read_like_their_variables():
    from tracker.cli import _option_values

    args = _run_parser().parse_args([
        "--rate", "5", "--pue", "1.2", "--no-cpu", "--log-to", "mlflow", "--log-to", "wandb",
        "--gpus", "0,GPU-abc", "--emissions-csv", "0", "--grid-year", "2020", "--", "true"])
    values, sources = _option_values(args)
    assert values == {"rate_hz": 5.0, "pue": 1.2, "cpu": False, "log_to": ["mlflow", "wandb"],
                      "gpus": [0, "GPU-abc"], "emissions_csv": False, "grid_year": 2020}
    assert sources["pue"] == "command line --pue"
    assert _option_values(_run_parser().parse_args(["--", "true"])) == ({}, {})


def test_a_bad_flag_value_names_the_flag(capsys, tmp_path):
    from tracker.cli import main

    assert main(["run", "--output-dir", str(tmp_path), "--pue", "abc", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert "--pue='abc': pue must be a number" in err
    assert main(["run", "--output-dir", str(tmp_path), "--pue", "0.5", "--", "true"]) == 2
    assert "command line --pue: pue=0.5 is out of range" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())   # nothing was started


def test_docs_options_md_is_generated_from_the_declaration():
    done = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    for opt in OPTIONS.values():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{opt.name}` |"))
        assert (opt.env or "") in row and (opt.cli or "") in row


def test_a_stale_options_md_is_detected(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gen_options_doc", GEN)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    out = tmp_path / "options.md"
    monkeypatch.setattr(gen, "OUT", out)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1                  # missing
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
    out.write_text(out.read_text().replace("ENERGY_TRACKER_PUE", "ENERGY_TRACKER_PEU"))
    assert gen.main(["--check"]) == 1                  # edited by hand / declaration changed
