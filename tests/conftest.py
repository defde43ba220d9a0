"""Shared fixtures: a fake `pynvml` module standing in for the NVIDIA driver (see
fakes/fake_nvml.py) and a fake `amdsmi` for AMD GPUs (fakes/fake_amdsmi.py), installed at the
import boundary for each test that asks for them, and fake hwmon trees (fakes/fake_hwmon.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Union

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fake_amdsmi import FakeAmdGPU, FakeAMDSMI
from fake_amdsmi import gpus as amd_gpus
from fake_hwmon import HwmonTree
from fake_nvml import (
    FI_DEV_POWER_INSTANT,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_SUCCESS,
    UUIDS,
    Constant,
    FakeGPU,
    FakeNVML,
    MigHandle,
    NVMLError,
    Profile,
    Step,
)
from manual_time import ManualClock

__all__ = [
    "FI_DEV_POWER_INSTANT",
    "NVML_ERROR_GPU_IS_LOST",
    "NVML_ERROR_LIBRARY_NOT_FOUND",
    "NVML_ERROR_NOT_FOUND",
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_SUCCESS",
    "UUIDS",
    "Constant",
    "FakeAMDSMI",
    "FakeAmdGPU",
    "FakeGPU",
    "FakeNVML",
    "HwmonTree",
    "ManualClock",
    "MigHandle",
    "NVMLError",
    "Profile",
    "Step",
]


# Every run writes report.html at its end by default (~5 MB, 0.1-1 s each): off for the
# hundreds of runs of this suite, and their subprocesses; the tests of that feature turn it on.
os.environ.setdefault("ENERGY_TRACKER_REPORT_HTML", "0")
# This machine's own hwmon meters (an ACPI power meter on a real server would become the IT
# total) stay out of runs that do not ask for them: tests of hwmon pass hwmon_root= a fake tree.
os.environ.setdefault("ENERGY_TRACKER_HWMON_ROOT", "/nonexistent/energy-tracker-tests/hwmon")


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeNVML]:
    """Factory: `fake_nvml(2)` (two 300 W H100s) or `fake_nvml(FakeGPU(...), ...)`.

    Installs the fake as the `pynvml` module and clears the environment variables that would
    change which GPUs are measured or make a Tracker join another run.
    """
    for var in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "ENERGY_TRACKER_RUN_DIR",
                "ENERGY_TRACKER_OUTPUT_DIR"):
        monkeypatch.delenv(var, raising=False)

    def build(*gpus: Union[int, FakeGPU], library_missing: bool = False) -> FakeNVML:
        if len(gpus) == 1 and isinstance(gpus[0], int):
            devices = [FakeGPU(uuid=UUIDS[i]) for i in range(gpus[0])]
        else:
            devices = [g for g in gpus if isinstance(g, FakeGPU)]
        fake = FakeNVML(devices, library_missing=library_missing)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake

    return build


@pytest.fixture
def one_rank(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process as the only rank of a torchrun job on one node."""
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks"))
    for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB"):
        monkeypatch.delenv(var, raising=False)
    for var, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                       ("LOCAL_WORLD_SIZE", "1"), ("ENERGY_TRACKER_NODE", "node-a"),
                       ("TORCHELASTIC_RESTART_COUNT", "0")):
        monkeypatch.setenv(var, value)


@pytest.fixture
def fake_amdsmi(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeAMDSMI]:
    """Factory: `fake_amdsmi(2)` (two 500 W MI300X) or `fake_amdsmi(FakeAmdGPU(...), ...)`.

    Installs the fake as the `amdsmi` module and clears the environment variables that choose
    AMD GPUs (HIP_, ROCR_, CUDA_VISIBLE_DEVICES) or would make a Tracker join another run.
    """
    for var in ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES",
                "ENERGY_TRACKER_RUN_DIR", "ENERGY_TRACKER_OUTPUT_DIR"):
        monkeypatch.delenv(var, raising=False)

    def build(*gpus: Union[int, FakeAmdGPU], **kw: Any) -> FakeAMDSMI:
        if len(gpus) == 1 and isinstance(gpus[0], int):
            devices = amd_gpus(gpus[0])
        else:
            devices = [g for g in gpus if isinstance(g, FakeAmdGPU)]
        fake = FakeAMDSMI(devices, **kw)
        monkeypatch.setitem(sys.modules, "amdsmi", fake)
        return fake

    return build


@pytest.fixture
def hwmon_tree(tmp_path: Path) -> Iterator[HwmonTree]:
    """An empty fake /sys/class/hwmon under tmp_path; its counter threads stop afterwards."""
    tree = HwmonTree(tmp_path / "sys")
    tree.root.mkdir(parents=True)
    yield tree
    tree.stop()


@pytest.fixture
def manual_clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """Time driven by hand (tests/manual_time.py): every run started in the test reads this clock
    and is ticked by `manual_clock.sleep(s)`, not by its thread. Give fake GPUs `clock=` it."""
    import tracker.sampler

    clock = ManualClock()
    monkeypatch.setattr(tracker.sampler, "monotonic_s", clock)
    monkeypatch.setattr(tracker.sampler, "hand_ticked", clock.samplers)
    return clock


@pytest.fixture
def clocked_h100(fake_nvml: Callable[..., FakeNVML], manual_clock: ManualClock) -> FakeGPU:
    """`fake_h100` on the hand-driven clock: a constant 300 W H100 with an energy counter."""
    gpu = FakeGPU(name="NVIDIA H100 80GB HBM3", uuid=UUIDS[0], profile=Constant(300.0),
                  clock=manual_clock)
    fake_nvml(gpu)
    return gpu


@pytest.fixture
def fake_h100(fake_nvml: Callable[..., FakeNVML]) -> FakeGPU:
    """One H100 drawing a constant 300 W, with energy counter and instant power field."""
    gpu = FakeGPU(name="NVIDIA H100 80GB HBM3", uuid=UUIDS[0], profile=Constant(300.0))
    fake_nvml(gpu)
    return gpu


@pytest.fixture
def fake_old_gpu(fake_nvml: Callable[..., FakeNVML]) -> FakeGPU:
    """A pre-Volta GPU: no energy counter, no instant power field, averaged power only."""
    gpu = FakeGPU(name="Tesla P100-SXM2-16GB", uuid=UUIDS[1], profile=Constant(300.0),
                  has_counter=False, has_instant=False, power_limit_w=300.0)
    fake_nvml(gpu)
    return gpu


@pytest.fixture
def fake_gpu() -> list:
    """Sensors for one GPU drawing a constant 200 W with no energy counter (like a pre-Volta
    GPU), so the curve is the exact integral of the power; pass as `sensors=` to a tracker."""
    from tracker.sensors.nvidia import discover_gpus

    gpu = FakeGPU(name="Fake GPU 200 W", uuid=UUIDS[0], profile=Constant(200.0),
                  has_counter=False, has_instant=False, power_limit_w=300.0)
    return discover_gpus(nvml=FakeNVML([gpu]), env={}).sensors


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 20.0) -> None:
    """Poll until `condition()` is true (a background thread's work is done): a fixed sleep
    is too short on a loaded machine. Fails, saying what it waited for, after timeout_s."""
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.02)


def condensed(run_dir: Path) -> bool:
    """Every rotated raw segment (samples.<k>.jsonl) has been condensed and removed."""
    return not any(p.name.startswith("samples.") and p.name != "samples.jsonl"
                   for p in run_dir.iterdir())


def step_windows(run_dir) -> list[dict]:
    """The run's steps from steps.bin, shaped like windows.json's windows (start_s, end_s,
    duration_s, energy_j, attrs with index/samples/tokens)."""
    from tracker.rundir.ledger import read_steps

    out = []
    for s in read_steps(run_dir / "steps.bin"):
        attrs = {k: s[k] for k in ("index", "samples", "tokens") if s[k]}
        attrs["index"] = s["index"]
        out.append({"kind": "step", "start_s": s["t_start"], "end_s": s["t_end"],
                    "duration_s": s["duration_s"], "energy_j": s["energy_j"], "attrs": attrs,
                    "parent": s["parent"]})
    return out
