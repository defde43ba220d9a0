"""AMD GPUs through a fake `amdsmi` (tests/fakes/fake_amdsmi.py) that answers with amdsmi's own
names and return shapes: discovery, counter and power modes, accumulator wraps, the visible-
device variables, partitioned MI300X, job claims by UUID, and real tracked runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Constant, FakeAmdGPU
from fake_amdsmi import AMD_UUIDS, SERIALS
from fake_amdsmi import gpus as amd_gpus

from tracker import ConfigError, track
from tracker.errors import SensorFailed
from tracker.job.claims import claim_key
from tracker.job.merge import merge
from tracker.sensors import amd
from tracker.sensors.amd import discover_amd_gpus
from tracker.sensors.base import COUNTER, SAMPLED

FAST = dict(rate_hz=50, counter_interval_s=0.2, cpu=False, ram=False, emissions_csv=False)


def names(found) -> list[str]:
    return [s.name for s in found.sensors]


# -- discovery and reads --------------------------------------------------------------------------
def test_an_mi300x_is_measured_with_its_energy_accumulator(fake_amdsmi):
    fake = fake_amdsmi(2)
    found = discover_amd_gpus()
    assert names(found) == ["gpu0", "gpu1"]
    gpu = found.sensors[0]
    assert gpu.method == COUNTER and gpu.has_counter and gpu.has_power
    d = gpu.info.details
    assert d["uuid"] == AMD_UUIDS[0] and d["model"] == "AMD Instinct MI300X"
    assert d["power_source"] == "current_socket_power" and d["counter_resolution_uj"] == 15.3
    assert d["power_limit_w"] == 750.0 and d["driver"] == "6.10.5" and d["hip_id"] == 0
    assert gpu.info.component == "gpu"
    assert "amdsmi energy accumulator" in gpu.info.description
    # the accumulator x its resolution, in J from the sensor's first read
    g = fake.gpus[0]
    time.sleep(0.05)
    e1 = gpu.read_energy_j()
    time.sleep(0.05)
    e2 = gpu.read_energy_j()
    first = g.reads[0][1]
    assert e1 == pytest.approx((g.reads[1][1] - first) * 15.3 / 1e6, abs=1e-9)
    assert e2 == pytest.approx((g.reads[2][1] - first) * 15.3 / 1e6, abs=1e-9)
    assert e2 - e1 == pytest.approx(500.0 * (g.reads[2][0] - g.reads[1][0]), rel=0.01)
    assert gpu.read_power_w() == 500.0
    assert gpu.read_utilization_pct() == 97.0
    for s in found.sensors:
        s.close()
    assert fake.initialised == 0   # one init, shut down when the last GPU closed


def test_a_gpu_without_the_counter_is_sampled_from_its_power(fake_amdsmi):
    fake_amdsmi(FakeAmdGPU(name="AMD Instinct MI100", has_counter=False,
                           power_field="average_socket_power", profile=Constant(280.0)))
    (gpu,) = discover_amd_gpus().sensors
    assert gpu.method == SAMPLED and not gpu.has_counter
    assert gpu.info.details["power_source"] == "average_socket_power"
    assert gpu.read_energy_j() is None and gpu.read_power_w() == 280.0
    assert "integrated, trapezoid rule" in gpu.info.description


def test_rocm7_socket_power_is_preferred(fake_amdsmi):
    fake_amdsmi(FakeAmdGPU(rocm7=True, has_counter=False))
    (gpu,) = discover_amd_gpus().sensors
    assert gpu.info.details["power_source"] == "socket_power"


def test_a_gpu_with_neither_energy_nor_power_is_a_note(fake_amdsmi):
    fake_amdsmi(FakeAmdGPU(has_counter=False, power_field=""))
    found = discover_amd_gpus()
    assert found.sensors == []
    assert any("reports neither an energy counter nor power" in n for n in found.notes)


def test_a_32_bit_accumulator_that_wraps_is_unwrapped(fake_amdsmi):
    # 1 kW at 15.3 µJ a tick is ~65 M ticks/s: the 32-bit accumulator wraps every ~66 s;
    # start it ~50 ms before the wrap
    g = FakeAmdGPU(counter_bits=32, counter_origin_ticks=2**32 - 3_300_000,
                   profile=Constant(1000.0))
    fake_amdsmi(g)
    (gpu,) = discover_amd_gpus().sensors
    time.sleep(0.1)                      # ~6 500 ticks: past the wrap
    e = gpu.read_energy_j()
    (_, a), (_, b) = g.reads[0], g.reads[-1]
    assert b < a                          # the raw value did wrap
    assert e == pytest.approx((b + 2**32 - a) * 15.3 / 1e6, abs=1e-9)
    assert e == pytest.approx(1000.0 * (g.reads[-1][0] - g.reads[0][0]), rel=0.05)
    assert gpu.resets == 0


def test_a_counter_that_restarts_counts_from_its_new_origin(fake_amdsmi):
    g = FakeAmdGPU(profile=Constant(500.0))
    fake_amdsmi(g)
    (gpu,) = discover_amd_gpus().sensors
    time.sleep(0.02)
    before = gpu.read_energy_j()
    g.counter_origin_ticks = 0          # the driver was reloaded: a 64-bit count from ~0
    g.born = time.monotonic()
    time.sleep(0.02)
    after = gpu.read_energy_j()
    assert gpu.resets == 1
    assert after - before == pytest.approx(g.reads[-1][1] * 15.3 / 1e6, abs=1e-9)


def test_a_lost_gpu_raises_sensor_failed(fake_amdsmi):
    g = FakeAmdGPU()
    fake_amdsmi(g)
    (gpu,) = discover_amd_gpus().sensors
    g.fail_after_reads = g.data_reads
    with pytest.raises(SensorFailed, match=r"energy counter read failed.*NOT_FOUND"):
        gpu.read_energy_j()
    with pytest.raises(SensorFailed, match="power read failed"):
        gpu.read_power_w()


# -- no library, no driver ------------------------------------------------------------------------
def test_no_amdsmi_and_no_amd_driver_says_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)   # import amdsmi -> ImportError
    monkeypatch.setattr(amd, "_amd_driver_present", lambda: False)
    assert discover_amd_gpus() == amd.Discovery([], [])


def test_no_amdsmi_on_a_machine_with_the_amd_driver_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    monkeypatch.setattr(amd, "_amd_driver_present", lambda: True)
    found = discover_amd_gpus()
    assert found.sensors == []
    (note,) = found.notes
    assert "amdsmi is not installed" in note and "trainjoule[amd]" in note


def test_a_driver_that_is_not_loaded_is_a_note(fake_amdsmi, monkeypatch):
    fake_amdsmi(1, driver_missing=True)
    monkeypatch.setattr(amd, "_amd_driver_present", lambda: True)
    found = discover_amd_gpus()
    assert found.sensors == []
    assert any("amdsmi could not start" in n and "DRIVER_NOT_LOADED" in n for n in found.notes)


# -- which GPUs -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("env", "expect"), [
    ({"HIP_VISIBLE_DEVICES": "2,0"}, [2, 0]),
    ({"CUDA_VISIBLE_DEVICES": "1"}, [1]),                       # HIP honours it too
    ({"HIP_VISIBLE_DEVICES": "3", "CUDA_VISIBLE_DEVICES": "0"}, [3]),   # HIP's wins
    ({"ROCR_VISIBLE_DEVICES": "1,3"}, [1, 3]),
    ({"ROCR_VISIBLE_DEVICES": "1,3", "HIP_VISIBLE_DEVICES": "1"}, [3]),  # HIP indexes ROCR's
    ({"HIP_VISIBLE_DEVICES": AMD_UUIDS[2]}, [2]),              # amdsmi's UUID
    ({"HIP_VISIBLE_DEVICES": AMD_UUIDS[3][:8]}, [3]),          # a unique prefix
    ({"ROCR_VISIBLE_DEVICES": "GPU-" + SERIALS[1][2:].lower()[:15]}, [1]),   # HIP's UUID form
])
def test_visible_device_variables_choose_the_gpus(fake_amdsmi, env, expect):
    fake_amdsmi(4)
    found = discover_amd_gpus(env=env)
    assert [s.info.details["index"] for s in found.sensors] == expect
    assert [s.info.details["uuid"] for s in found.sensors] == [AMD_UUIDS[i] for i in expect]


@pytest.mark.parametrize("value", ["", "-1"])
def test_a_variable_that_hides_every_gpu(fake_amdsmi, value):
    fake_amdsmi(2)
    found = discover_amd_gpus(env={"HIP_VISIBLE_DEVICES": value})
    assert found.sensors == []
    assert found.notes == [f"HIP_VISIBLE_DEVICES={value!r} hides every AMD GPU: AMD GPUs are "
                           "not measured."]


def test_an_invalid_entry_ends_the_list_as_hip_does(fake_amdsmi):
    fake_amdsmi(3)
    found = discover_amd_gpus(env={"HIP_VISIBLE_DEVICES": "1,7,2"})
    assert [s.info.details["index"] for s in found.sensors] == [1]
    assert any("'7' matches no AMD GPU" in n and "later entries are ignored" in n
               for n in found.notes)


def test_gpus_option_is_strict(fake_amdsmi):
    fake_amdsmi(2)
    assert [s.info.details["index"] for s in discover_amd_gpus([AMD_UUIDS[1]]).sensors] == [1]
    with pytest.raises(ConfigError, match="gpus= entry '5' matches no AMD GPU"):
        discover_amd_gpus([5])


def test_gpus_option_with_a_typo_fails_the_tracker_at_construction(fake_amdsmi, fake_nvml,
                                                                   tmp_path):
    fake_nvml()   # NVML without a GPU
    fake_amdsmi(1)
    with pytest.raises(ConfigError, match="matches no"):
        track("typo", gpus=["not-a-gpu"], output_dir=tmp_path, **FAST)


# -- partitioned MI300X ---------------------------------------------------------------------------
def cpx_gpu() -> FakeAmdGPU:
    return FakeAmdGPU(partitions=8, compute_partition="CPX", profile=Constant(600.0))


def test_a_cpx_mode_gpu_is_measured_once_and_says_so(fake_amdsmi):
    fake_amdsmi(cpx_gpu())
    found = discover_amd_gpus()
    (gpu,) = found.sensors   # eight processors, one physical GPU
    d = gpu.info.details
    assert d["partitions"] == 8 and d["compute_partition"] == "CPX"
    assert d["uuid"] == AMD_UUIDS[0] and gpu.has_counter
    (note,) = found.notes
    assert "partitions of one physical AMD Instinct MI300X" in note
    assert "CPX mode, 8 partitions" in note and "includes every partition" in note


@pytest.mark.parametrize("visible", ["0", "5", "3,6"])
def test_any_partition_maps_to_the_whole_gpu_with_its_uuid(fake_amdsmi, visible):
    fake_amdsmi(cpx_gpu())
    (gpu,) = discover_amd_gpus(env={"HIP_VISIBLE_DEVICES": visible}).sensors
    # the physical GPU's UUID (partition 0's): every process of a job claims the same device
    assert gpu.info.details["uuid"] == AMD_UUIDS[0]
    assert gpu.info.details["index"] == 0
    assert claim_key(gpu, "node-a") == f"dev-{AMD_UUIDS[0]}"


def test_without_enumeration_info_indices_follow_amdsmi(fake_amdsmi):
    fake_amdsmi(3, enumeration_info=False)   # amdsmi < 6.4
    with pytest.raises(AttributeError):
        sys.modules["amdsmi"].amdsmi_get_gpu_enumeration_info   # noqa: B018
    (gpu,) = discover_amd_gpus(env={"HIP_VISIBLE_DEVICES": "2"}).sensors
    assert gpu.info.details["uuid"] == AMD_UUIDS[2] and "hip_id" not in gpu.info.details


# -- runs -----------------------------------------------------------------------------------------
def test_a_tracked_run_counts_the_accumulator_exactly(fake_amdsmi, manual_clock, tmp_path):
    fake = fake_amdsmi(*amd_gpus(2, clock=manual_clock))   # run time by hand: exact edges
    run = track("amd-run", output_dir=tmp_path, **FAST)   # discovery: one probe read each
    manual_clock.advance(0.001)
    since = manual_clock()                                  # the run's reads come after
    with run:
        with run.window("work"):
            manual_clock.sleep(0.4)
        manual_clock.sleep(0.1)
    s = run.summary
    assert [d.name for d in s.devices] == ["gpu0", "gpu1"]
    for dev, g in zip(s.devices, fake.gpus):
        assert dev.method == COUNTER
        # the accumulator's own delta from the run's first read to its last (the run log
        # keeps counter reads to the mJ)
        assert dev.energy_j == pytest.approx(g.counted_j(since), abs=1e-3)
    assert s.components["gpu"].energy_j == pytest.approx(sum(g.counted_j(since)
                                                             for g in fake.gpus), abs=2e-3)
    assert s.energy_j == pytest.approx(s.components["gpu"].energy_j, abs=1e-9)
    (w,) = s.windows
    assert w.duration_s == pytest.approx(0.4, abs=1e-6)
    # 15.3 uJ ticks: the accumulator's own resolution, far below 1e-4 of 400 J
    assert w.by_component_j["gpu"] == pytest.approx(2 * 500.0 * 0.4, rel=1e-4)
    manifest = json.loads((run.run_dir / "run.json").read_text())
    assert [d["details"]["uuid"] for d in manifest["devices"]] == list(AMD_UUIDS[:2])
    assert fake.initialised == 0   # amdsmi shut down at stop


def test_a_job_claims_a_partitioned_gpu_once(fake_amdsmi, tmp_path, monkeypatch):
    """Two ranks on one MI300X in CPX mode, each seeing its own partition: one measures the
    GPU, the other finds it claimed (claims go by the physical GPU's UUID)."""
    fake = fake_amdsmi(cpx_gpu())
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks"))
    for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB"):
        monkeypatch.delenv(var, raising=False)

    def as_rank(rank: int) -> None:
        for k, v in dict(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=2, LOCAL_WORLD_SIZE=2,
                         ENERGY_TRACKER_NODE="node-a", TORCHELASTIC_RESTART_COUNT=0,
                         HIP_VISIBLE_DEVICES=rank).items():
            monkeypatch.setenv(k, str(v))

    # devices are opened by start(): a's own reads are those from its sampler's first tick on
    # (after its discovery's probe read)
    import tracker.sampler as sampler_module
    started: list[float] = []
    real_start = sampler_module.Sampler.start

    def start(self, *args, **kwargs):
        started.append(time.monotonic())
        return real_start(self, *args, **kwargs)

    monkeypatch.setattr(sampler_module.Sampler, "start", start)
    as_rank(0)
    a = track("a", job="amd-cpx", output_dir=tmp_path, job_timeout_s=2, **FAST)
    a.start()
    since = started[0]
    as_rank(1)
    b = track("b", job="amd-cpx", output_dir=tmp_path, job_timeout_s=2, **FAST).start()
    time.sleep(0.3)
    b.stop()
    a.stop()
    assert [d.details["uuid"] for d in a.own_summary.devices] == [AMD_UUIDS[0]]
    assert b.own_summary.devices == ()
    job = merge([a._job.job_dir])
    (dev,) = job.devices
    # b's discovery probed the counter too: a's reads are the first and last after `since`
    assert dev.energy_j == pytest.approx(fake.gpus[0].counted_j(since), abs=1e-3)
    assert job.energy_j == pytest.approx(dev.energy_j, abs=1e-9)


def test_import_tracker_does_not_import_amdsmi(tmp_path):
    """amdsmi is imported by discovery only: `import tracker` and a configured-but-unstarted
    import of the API stay free of it (and of the registry's other heavy modules)."""
    fakes = Path(__file__).parent / "fakes" / "amdsmi_site"
    code = ("import sys, tracker\nfrom tracker import track\n"
            "from tracker.sensors import registry\n"
            "print(sorted(m for m in ('amdsmi', 'pynvml', 'psutil', 'tracker.sensors.amd', "
            "'tracker.sensors.hwmon', 'tracker.sensors.nvidia') if m in sys.modules))\n"
            "registry.discover(registry.Options(cpu=False, ram=False))\n"
            "print('amdsmi' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(fakes)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "True"   # discovery did import it (the fake, from PYTHONPATH)
