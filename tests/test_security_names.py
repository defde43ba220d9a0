"""Run names and command lines as hostile input: checked at construction, bounded on disk,
secrets kept out of run.json (issue 18, item 11)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.fakes.fake_nvml import FakeGPU
from tracker import ConfigError, track
from tracker.config import MAX_NAME_CHARS, TrackerConfig
from tracker.redact import REDACTED, redact_argv
from tracker.rundir.runlog import SLUG_MAX_BYTES, run_dir_slug

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2, report_html=False)


def test_a_name_too_long_is_refused_at_construction(tmp_path):
    with pytest.raises(ConfigError, match=f"at most {MAX_NAME_CHARS}"):
        TrackerConfig.from_options("x" * 300, output_dir=tmp_path)
    TrackerConfig.from_options("x" * MAX_NAME_CHARS, output_dir=tmp_path)   # the limit itself


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "nul\x00", "bell\x07"])
def test_control_characters_in_a_name_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="control characters"):
        TrackerConfig.from_options(name, output_dir=tmp_path)


def test_non_latin_names_keep_their_letters_within_the_file_name_limit():
    assert run_dir_slug("é" * 10) == "é" * 10
    assert run_dir_slug("训练-运行") == "训练-运行"
    long = run_dir_slug("é" * 200)
    assert long.startswith("éé") and len(long.encode()) <= SLUG_MAX_BYTES
    assert long != run_dir_slug("é" * 199)         # the hash keeps long names apart
    assert run_dir_slug("../../etc") == "etc"       # no path separators, no leading dots
    assert run_dir_slug("///") == "run"


def test_a_long_unicode_name_starts_and_names_its_directory(fake_nvml, tmp_path):
    fake_nvml(FakeGPU())
    name = "é" * MAX_NAME_CHARS
    with track(name, output_dir=tmp_path, **FAST) as run:
        pass
    assert "éé" in run.run_dir.name
    assert len(run.run_dir.name.encode()) < 255
    manifest = json.loads((run.run_dir / "run.json").read_text())
    assert manifest["name"] == name                 # the full name is kept in the manifest


@pytest.mark.parametrize(("argv", "expected", "n"), [
    (["train.py", "--hub_token", "hf_abcdefghijklmnopqrstuvwx", "--lr", "3e-4"],
     ["train.py", "--hub_token", REDACTED, "--lr", "3e-4"], 1),
    (["train.py", "--api-key=s3cr3t", "--max_tokens", "512"],
     ["train.py", f"--api-key={REDACTED}", "--max_tokens", "512"], 1),
    (["x.py", "WANDB_API_KEY=abc", "--password", "pw", "--author", "me"],
     ["x.py", f"WANDB_API_KEY={REDACTED}", "--password", REDACTED, "--author", "me"], 2),
    (["x.py", "ghp_0123456789abcdefghijABCDEFGHIJ"], ["x.py", REDACTED], 1),
    (["x.py", "--token", "--verbose"], ["x.py", "--token", "--verbose"], 0),
    (["x.py", "--tokenizer_name", "gpt2"], ["x.py", "--tokenizer_name", "gpt2"], 0),
])
def test_secrets_are_taken_out_of_command_lines(argv, expected, n):
    assert redact_argv(argv) == (expected, n)


def test_run_json_holds_no_token_given_on_the_command_line(fake_nvml, tmp_path, monkeypatch):
    fake_nvml(FakeGPU())
    token = "hf_" + "Q" * 30
    monkeypatch.setattr(sys, "argv", ["train.py", "--hub_token", token, "--epochs", "1"])
    with track("argv", output_dir=tmp_path, **FAST) as run:
        pass
    for path in run.run_dir.iterdir():
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path.name
    host = json.loads((run.run_dir / "run.json").read_text())["host"]
    assert host["argv"] == ["train.py", "--hub_token", REDACTED, "--epochs", "1"]
    assert host["argv_redacted"] == 1
    assert oct(os.stat(run.run_dir / "run.json").st_mode & 0o777) == "0o644"


def test_a_world_writable_output_dir_without_sticky_bit_is_refused(tmp_path):
    shared = tmp_path / "team"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(ConfigError, match="no sticky bit"):
        TrackerConfig.from_options("x", output_dir=shared / "runs")
    os.chmod(shared, 0o1777)                       # like /tmp: others cannot rename our files
    TrackerConfig.from_options("x", output_dir=shared / "runs")


def test_steps_file_is_never_written_through_a_link(tmp_path):
    from tracker.rundir.ledger import StepFile
    from tracker.safefs import UnsafePath
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    (tmp_path / "steps.bin").symlink_to(precious)
    with pytest.raises(UnsafePath):
        StepFile(tmp_path / "steps.bin")
    assert precious.read_text() == "mine"
