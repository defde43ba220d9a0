"""Construction is cheap because it loads little: what `track()` imports and opens is checked
here by name (modules in sys.modules, NVML calls), not by wall-clock time; the seconds are
measured by scripts/bench_cost.py. Devices (NVML, amdsmi, plugin entry points) are opened by
start(); an explicit gpus= is still checked against the machine at construction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tracker import track
from tracker.errors import ConfigError
from tracker.sensors import registry

ROOT = Path(__file__).resolve().parent.parent
FAKE_NVML_SITE = ROOT / "tests" / "fakes" / "nvml_site"
FAST = {"rate_hz": 20, "report_html": False, "quiet": True, "emissions_csv": False}

# Loaded by start() or stop(), never by construction (nor by `import tracker`).
LAZY = ("pynvml", "amdsmi", "importlib.metadata", "psutil", "requests", "numpy",
        "tracker.sensors.registry", "tracker.sensors.nvidia", "tracker.sensors.cpuram",
        "tracker.summary_build", "tracker.report")

CHILD = """
import json, sys, tempfile
before = set(sys.modules)
import tracker
after_import = set(sys.modules) - before
t = tracker.track("x", output_dir=tempfile.mkdtemp(), region=sys.argv[1])
after_construction = set(sys.modules) - before
t.start()
after_start = set(sys.modules) - before
t.stop()
print(json.dumps({"import": sorted(after_import), "construction": sorted(after_construction),
                  "start": sorted(after_start)}))
"""


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENERGY_TRACKER_", "SLURM"))}
    env["PYTHONPATH"] = str(ROOT)
    env["ENERGY_TRACKER_QUIET"] = "1"
    env.update(extra)
    return env


def loaded(region: str, cwd: Path, **env: str) -> dict[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", CHILD, region], capture_output=True, text=True,
                          env=child_env(**env), cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr
    out: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def lazy_in(modules: list[str]) -> list[str]:
    return [m for m in modules if m in LAZY or any(m.startswith(x + ".") for x in LAZY)]


@pytest.mark.parametrize("region", ["DE", "California"])
def test_construction_imports_none_of_the_heavy_modules(tmp_path, region):
    got = loaded(region, tmp_path, PYTHONPATH=f"{FAKE_NVML_SITE}{os.pathsep}{ROOT}",
                 FAKE_NVML_WATTS="300,300")
    assert lazy_in(got["import"]) == []
    assert lazy_in(got["construction"]) == []
    # and they are what start() loads: the fake NVML's GPUs and the CPU/RAM models were found
    assert {"pynvml", "tracker.sensors.nvidia", "tracker.sensors.cpuram", "psutil"} <= set(
        got["start"])
    # nothing above was imported for nothing: the guard list names modules a run does load
    assert "tracker.summary_build" in got["start"]


def test_devices_are_opened_by_start_not_by_construction(fake_nvml, tmp_path):
    nvml = fake_nvml(2)
    run = track("lazy", output_dir=tmp_path, **FAST)
    assert nvml.calls["nvmlInit"] == 0 and run._sensors is None
    with run:
        assert nvml.calls["nvmlInit"] == 1
        assert [d.sensor.name for d in run.devices][:2] == ["gpu0", "gpu1"]
    assert run.summary.components["gpu"].energy_j > 0


def test_an_explicit_gpu_list_is_still_checked_at_construction(fake_nvml, tmp_path):
    nvml = fake_nvml(2)
    with pytest.raises(ConfigError, match="'5' matches no NVIDIA GPU"):
        track("bad", gpus=[5], output_dir=tmp_path, **FAST)
    run = track("ok", gpus=[1], output_dir=tmp_path, **FAST)
    assert nvml.calls["nvmlInit"] >= 1 and run._sensors[0].name == "gpu1"


# -- plugin entry points: listed only where a distribution declares the group -------------------
def dist(site: Path, name: str, entry_points: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_the_plugin_scan_sees_only_distributions_that_declare_sensor_kinds(tmp_path):
    site = tmp_path / "site"
    dist(site, "other", "[console_scripts]\nother = other:main\n")
    (site / "plain-2.0.dist-info").mkdir()            # no entry_points.txt at all
    assert registry._may_have_plugins([str(site), str(tmp_path / "absent")]) is False
    dist(site, "fpga", f"[{registry.ENTRY_POINT_GROUP}]\nfpga = fpga:KIND\n")
    assert registry._may_have_plugins([str(site)]) is True
    # a zip archive on the path may hold distributions: the full listing decides
    archive = tmp_path / "lib.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x.py", "")
    assert registry._may_have_plugins([str(tmp_path / "absent"), str(archive)]) is True


def test_without_plugins_discovery_does_not_import_importlib_metadata(tmp_path):
    code = ("import sys\nbefore = set(sys.modules)\nfrom tracker.sensors import registry\n"
            "notes = []\nkinds = registry.kinds(notes)\n"
            "print('importlib.metadata' in set(sys.modules) - before, len(kinds), notes)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env(), cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "4", "[]"]
