"""Configuration without code (issue 19 item 3): every option a launcher script needs has an
ENERGY_TRACKER_* variable, read with the option's type and validated like an argument.
Precedence: argument > environment > default; the summary says where each option came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracker import ConfigError, track
from tracker.config import OPTIONS, TrackerConfig

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).parent / "fakes" / "nvml_site"

# the variables the issue names: a launcher script or a YAML-less SLURM job needs them
NEEDED = ("REGION", "PUE", "GCO2_PER_KWH", "RATE_HZ", "OUTPUT_DIR", "GRID_YEAR",
          "LIVE_INTENSITY", "EMISSIONS_CSV", "LOG_TO", "JOB", "CPU_TDP_W", "PRICE_PER_KWH",
          "CURRENCY", "REPORT_HTML", "PROMETHEUS_PORT")


@pytest.fixture
def clean_env(monkeypatch):
    """No option variable from the machine or the suite (conftest sets two) leaks in."""
    for opt in OPTIONS.values():
        if opt.env:
            monkeypatch.delenv(opt.env, raising=False)
    monkeypatch.delenv("ENERGY_TRACKER_RUN_DIR", raising=False)
    return monkeypatch


def test_every_needed_option_has_a_variable():
    declared = {o.env for o in OPTIONS.values() if o.env}
    assert {f"ENERGY_TRACKER_{v}" for v in NEEDED} <= declared
    # ENERGY_TRACKER_RUN_DIR joins a run and ENERGY_TRACKER_NODE names a job's node: no
    # option may take those names
    assert not declared & {"ENERGY_TRACKER_RUN_DIR", "ENERGY_TRACKER_NODE"}
    assert len(declared) == len([o for o in OPTIONS.values() if o.env])   # one each


def test_region_and_pue_from_the_environment_alone_configure_a_plain_track(fake_nvml,
                                                                          tmp_path, clean_env):
    fake_nvml(1)
    clean_env.setenv("ENERGY_TRACKER_REGION", "DE")
    clean_env.setenv("ENERGY_TRACKER_PUE", "1.2")
    clean_env.chdir(tmp_path)
    with track(cpu=False, ram=False, emissions_csv=False) as run:
        pass
    s = run.summary
    assert s.grid["region_code"] == "DE" and s.pue == pytest.approx(1.2)
    note = next(n for n in s.notes if n.startswith("options: "))
    assert "region=DE (ENERGY_TRACKER_REGION)" in note and "pue=1.2 (ENERGY_TRACKER_PUE)" in note
    assert "cpu=False (argument)" in note
    config = json.loads((Path(run.run_dir) / "run.json").read_text())["config"]
    assert config["sources"]["region"] == "env ENERGY_TRACKER_REGION"
    assert config["sources"]["cpu"] == "argument"
    assert "rate_hz" not in config["sources"]          # at its default: no source
    assert Path(run.run_dir).parent == tmp_path / "energy-runs"


def test_a_script_configured_only_by_the_environment(tmp_path):
    """As a SLURM script would: nothing in the code but `track()`."""
    script = ("from tracker import track\n"
              "with track() as run:\n    pass\n"
              "print(run.summary.grid['region_code'], run.summary.pue)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENERGY_TRACKER_")}
    env.update(PYTHONPATH=os.pathsep.join([str(FAKES), str(ROOT)]), FAKE_NVML_WATTS="300",
               ENERGY_TRACKER_REGION="DE", ENERGY_TRACKER_PUE="1.2",
               ENERGY_TRACKER_OUTPUT_DIR=str(tmp_path / "runs"), ENERGY_TRACKER_REPORT_HTML="0")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["DE", "1.2"]
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "summary.json").exists()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["grid"]["region_code"] == "DE" and summary["pue"] == 1.2


def test_an_argument_wins_over_the_environment_which_wins_over_the_default(tmp_path,
                                                                          clean_env):
    clean_env.setenv("ENERGY_TRACKER_REGION", "DE")
    clean_env.setenv("ENERGY_TRACKER_RATE_HZ", "20")
    c = TrackerConfig.from_options("x", output_dir=tmp_path, region="FR")
    assert c.region == "FR" and c.rate_hz == 20.0 and c.summary_every_s == 10.0
    assert c.sources == {"output_dir": "argument", "region": "argument",
                         "rate_hz": "env ENERGY_TRACKER_RATE_HZ"}
    # None is every None-default option's "not given": the variable applies
    assert TrackerConfig.from_options("x", output_dir=tmp_path, region=None).region == "DE"


@pytest.mark.parametrize("var, text, option, value", [
    ("CPU", "0", "cpu", False), ("CPU", "no", "cpu", False), ("RAM", "TRUE", "ram", True),
    ("NODE_METER", "off", "node", False), ("REPORT_HTML", "yes", "report_html", True),
    ("RATE_HZ", "2.5", "rate_hz", 2.5), ("GRID_YEAR", "2020", "grid_year", 2020),
    ("PROMETHEUS_PORT", "0", "prometheus_port", 0), ("GPUS", "0, 1", "gpus", (0, 1)),
    ("GPUS", "GPU-a,GPU-b", "gpus", ("GPU-a", "GPU-b")), ("LOG_TO", "tensorboard",
                                                          "log_to", "tensorboard"),
    ("LOG_EVERY_STEPS", "none", "log_every_steps", None), ("JOB", " exp-7 ", "job", "exp-7"),
    ("EMISSIONS_CSV", "false", "emissions_csv", False), ("EMBODIED", "0", "embodied", False),
    ("CURRENCY", "EUR", "currency", "EUR"),
])
def test_each_variable_is_read_with_its_option_type(var, text, option, value, tmp_path,
                                                     clean_env):
    clean_env.setenv(f"ENERGY_TRACKER_{var}", text)
    extra = {"price_per_kwh": 0.2} if option == "currency" else {}
    if option == "log_to":
        pytest.importorskip("tensorboard", reason="log_to=tensorboard needs tensorboard")
    c = TrackerConfig.from_options("x", output_dir=tmp_path, **extra)
    assert getattr(c, option) == value
    assert c.sources[option] == f"env ENERGY_TRACKER_{var}"


def test_lists_and_paths_from_the_environment(tmp_path, clean_env):
    clean_env.setenv("ENERGY_TRACKER_EMISSIONS_CSV", str(tmp_path / "all.csv"))
    clean_env.setenv("ENERGY_TRACKER_OUTPUT_DIR", str(tmp_path / "runs"))
    c = TrackerConfig.from_options("x")
    assert c.emissions_csv == tmp_path / "all.csv" and c.output_dir == tmp_path / "runs"


@pytest.mark.parametrize("var, text, says", [
    ("PUE", "abc", r"^ENERGY_TRACKER_PUE='abc': pue must be a number$"),
    ("PUE", "0.5", r"^ENERGY_TRACKER_PUE='0.5': pue=0.5 is out of range \[1, 10\]"),
    ("CPU", "maybe", r"^ENERGY_TRACKER_CPU='maybe': cpu must be one of 1, true, yes, on, 0"),
    ("RATE_HZ", "1000", r"^ENERGY_TRACKER_RATE_HZ='1000': rate_hz=1000.0 is out of range"),
    ("GRID_YEAR", "2023.5", r"^ENERGY_TRACKER_GRID_YEAR='2023.5': grid_year must be a whole"),
    ("PROMETHEUS_PORT", "70000", r"^ENERGY_TRACKER_PROMETHEUS_PORT='70000': prometheus_port "),
    ("CPU_TDP_W", "-3", r"^ENERGY_TRACKER_CPU_TDP_W='-3': "),
    ("EMISSIONS_CSV", "out.txt", r"^ENERGY_TRACKER_EMISSIONS_CSV='out.txt': emissions_csv "),
    ("LOG_TO", "mlflw", r"^ENERGY_TRACKER_LOG_TO='mlflw': .*Did you mean 'mlflow'"),
    ("REGION", "Germny",
     r"^Unknown grid region 'Germny'.*\(region from ENERGY_TRACKER_REGION='Germny'\)$"),
    ("CURRENCY", "EUR", r"without price_per_kwh.*\(currency from ENERGY_TRACKER_CURRENCY="),
])
def test_a_bad_value_names_the_variable_the_value_and_what_is_accepted(var, text, says,
                                                                       tmp_path, clean_env):
    clean_env.setenv(f"ENERGY_TRACKER_{var}", text)
    with pytest.raises(ConfigError, match=says):
        TrackerConfig.from_options("x", output_dir=tmp_path)


def test_an_empty_variable_is_ignored_and_an_argument_hides_a_bad_one(tmp_path, clean_env):
    clean_env.setenv("ENERGY_TRACKER_REGION", "  ")
    clean_env.setenv("ENERGY_TRACKER_PUE", "abc")
    c = TrackerConfig.from_options("x", output_dir=tmp_path, pue=1.1)
    assert c.region is None and "region" not in c.sources and c.pue == 1.1


def test_the_token_is_neither_shown_nor_recorded(tmp_path, clean_env):
    c = TrackerConfig.from_options("x", output_dir=tmp_path, live_intensity="electricitymaps:DE",
                                   intensity_token="SECRET-1")
    assert "SECRET-1" not in (c.options_note() or "") and "SECRET-1" not in repr(c.manifest())


def test_a_joined_process_tells_its_own_options_from_inherited_ones(tmp_path, clean_env):
    """Under `energy-tracker run` the child inherits the command's environment: what the
    command's process saw (run.json config.env) is the command's, not the child's own."""
    clean_env.setenv("ENERGY_TRACKER_REGION", "DE")
    clean_env.setenv("ENERGY_TRACKER_PUE", "1.2")
    parent = TrackerConfig.from_options("cli", output_dir=tmp_path, region="FR").manifest()
    assert parent["env"] == {"ENERGY_TRACKER_REGION": "DE", "ENERGY_TRACKER_PUE": "1.2"}
    child = TrackerConfig.from_options("x", output_dir=tmp_path, grid_year=2020)
    assert child.region == "DE"
    assert child.own_options(parent) == {"output_dir", "grid_year"}
    clean_env.setenv("ENERGY_TRACKER_PUE", "1.5")    # the script set this one itself
    child = TrackerConfig.from_options("x", output_dir=tmp_path)
    assert child.own_options(parent) == {"output_dir", "pue"}
    assert child.own_options(None) == {"output_dir", "pue", "region"}   # not joined: all own


def _cli_run(tmp_path: Path, script: str, *flags: str, **env_vars: str) -> tuple[dict, dict]:
    path = tmp_path / "train.py"
    path.write_text(script)
    out = tmp_path / "script-summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENERGY_TRACKER_")}
    env.update(PYTHONPATH=os.pathsep.join([str(FAKES), str(ROOT)]), FAKE_NVML_WATTS="300",
               ENERGY_TRACKER_REPORT_HTML="0", **env_vars)
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "tracker", "run", "--output-dir", str(runs),
                           "--no-status", "--cpu-tdp", "15", *flags, "--", sys.executable,
                           str(path), str(out)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    (run,) = [p for p in runs.iterdir() if (p / "run.json").exists()]
    return json.loads(out.read_text()), json.loads((run / "summary.json").read_text())


CHILD = """
import json, os, sys
{before}
from tracker import track
with track("child", cpu=False, ram=False) as run:
    pass
with open(sys.argv[1], "w") as f:
    json.dump(run.stop().to_dict(), f)
"""


@pytest.mark.slow
def test_under_the_cli_the_inherited_environment_is_the_commands(tmp_path):
    """ENERGY_TRACKER_REGION=FR in the shell, `--region DE` on the command line: the flag
    wins, and the script, which inherited FR, does not ask for FR as if it were its own."""
    mine, cli = _cli_run(tmp_path, CHILD.format(before=""), "--region", "DE",
                         ENERGY_TRACKER_REGION="FR")
    assert mine["grid"]["region_code"] == cli["grid"]["region_code"] == "DE"
    assert not any("asked for other grid options" in n for n in mine["notes"] + cli["notes"])
    assert any("region=DE (command line --region)" in n for n in cli["notes"])


@pytest.mark.slow
def test_under_the_cli_a_variable_the_script_sets_itself_is_its_own(tmp_path):
    """The command line left the region at its default; the script set the variable itself:
    that is the script's option, and the run applies it (follow.joined_options)."""
    before = 'os.environ["ENERGY_TRACKER_REGION"] = "GB"'
    mine, cli = _cli_run(tmp_path, CHILD.format(before=before))
    assert mine["grid"]["region_code"] == cli["grid"]["region_code"] == "GB"
    assert any("from the tracked script" in n for n in cli["notes"])
