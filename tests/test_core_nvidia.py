"""NVIDIA GPU discovery and reads against a fake NVML installed as the `pynvml` module."""

from __future__ import annotations

import sys

import pytest
from conftest import UUIDS, Constant, FakeGPU

from tracker.errors import ConfigError, SensorFailed
from tracker.sensors.nvidia import discover_gpus

MIG_UUID = "MIG-5f1c9a2e-7b3d-5e88-9c41-0123456789ab"


@pytest.fixture
def two_h100s(fake_nvml):
    """Two H100s; the second is partitioned into a MIG instance."""
    return fake_nvml(FakeGPU(uuid=UUIDS[0]), FakeGPU(uuid=UUIDS[1], mig_uuids=(MIG_UUID,)))


@pytest.fixture
def three_gpus_shared_prefix(fake_nvml):
    """Three GPUs, two of whose UUIDs start with 'GPU-bbbb'."""
    return fake_nvml(FakeGPU(uuid=UUIDS[0]), FakeGPU(uuid=UUIDS[1]), FakeGPU(uuid=UUIDS[2]))


def indices(found) -> list[int]:
    return [s.info.details["index"] for s in found.sensors]


# -- what is measured, and how -------------------------------------------------------------------
def test_gpu_with_energy_counter_is_measured_by_the_counter(fake_h100):
    (gpu,) = discover_gpus().sensors

    assert gpu.name == "gpu0"
    assert gpu.component == "gpu"
    assert gpu.method == "counter"
    assert gpu.has_counter
    assert gpu.info.details["uuid"] == fake_h100.uuid
    assert gpu.info.details["model"] == "NVIDIA H100 80GB HBM3"
    assert gpu.info.details["driver"] == "580.159.04"
    assert gpu.info.details["power_limit_w"] == 700.0
    assert "NVML total-energy counter" in gpu.info.description


def test_gpu_without_counter_is_sampled_from_its_average_power(fake_old_gpu):
    (gpu,) = discover_gpus().sensors

    assert gpu.method == "sampled"
    assert not gpu.has_counter
    assert gpu.read_energy_j() is None
    assert gpu.info.details["power_source"] == "nvmlDeviceGetPowerUsage"
    assert "trapezoid" in gpu.info.description
    assert gpu.read_power_w() == 300.0


def test_counter_reads_are_joules_of_the_driver_counter(fake_h100):
    (gpu,) = discover_gpus().sensors

    first = gpu.read_energy_j()
    second = gpu.read_energy_j()

    assert first >= fake_h100.counter_origin_mj / 1000.0
    assert 0.0 <= second - first < 300.0 * 0.5  # mJ -> J: a few ms at 300 W, not kJ


def test_instant_power_field_is_preferred(fake_nvml):
    nvml = fake_nvml(FakeGPU(profile=Constant(412.5)))
    (gpu,) = discover_gpus().sensors
    averaged_before = nvml.calls["nvmlDeviceGetPowerUsage"]

    assert gpu.read_power_w() == 412.5
    assert gpu.info.details["power_source"] == "instant power field"
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == averaged_before


def test_average_power_is_the_fallback_without_instant_field(fake_nvml):
    nvml = fake_nvml(FakeGPU(profile=Constant(412.5), has_instant=False))
    (gpu,) = discover_gpus().sensors
    averaged_before = nvml.calls["nvmlDeviceGetPowerUsage"]

    assert gpu.read_power_w() == 412.5
    assert gpu.method == "counter"
    assert gpu.info.details["power_source"] == "nvmlDeviceGetPowerUsage"
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == averaged_before + 1


def test_gpu_reporting_neither_energy_nor_power_is_skipped_with_a_note(fake_nvml):
    fake_nvml(FakeGPU(has_counter=False, has_instant=False, has_power=False))

    found = discover_gpus()

    assert found.sensors == []
    assert any("GPU 0 not measured" in n and "neither energy nor power" in n
               for n in found.notes)


def test_lost_gpu_read_raises_sensor_failed(fake_nvml):
    fake_nvml(FakeGPU(fail_after_reads=10))
    (gpu,) = discover_gpus().sensors

    with pytest.raises(SensorFailed, match=r"gpu0: energy counter read failed.*GPU is lost"):
        for _ in range(20):
            gpu.read_energy_j()


def test_counter_interval_is_passed_to_the_sensor(fake_h100):
    (gpu,) = discover_gpus(counter_interval_s=0.2).sensors
    assert gpu.counter_interval_s == 0.2


# -- CUDA_VISIBLE_DEVICES ------------------------------------------------------------------------
@pytest.mark.parametrize(("visible", "expected"), [
    ("0", [0]),
    ("1", [1]),
    ("1,0", [1, 0]),
    (" 1 , 0 ", [1, 0]),
    ("0,0", [0]),
    (UUIDS[1], [1]),
    (UUIDS[1].upper(), [1]),
    ("GPU-aaaa", [0]),
    ("aaaaaaaa-1111", [0]),
    (f"{UUIDS[1]},0", [1, 0]),
])
def test_cuda_visible_devices_selects_gpus(two_h100s, visible, expected):
    found = discover_gpus(env={"CUDA_VISIBLE_DEVICES": visible})

    assert indices(found) == expected
    assert [s.name for s in found.sensors] == [f"gpu{i}" for i in expected]


def test_cuda_visible_devices_from_the_process_environment(two_h100s, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")

    assert indices(discover_gpus()) == [1]


def test_no_cuda_visible_devices_measures_every_gpu(two_h100s):
    found = discover_gpus(env={})

    assert indices(found) == [0, 1]
    assert found.notes == []


def test_mig_uuid_measures_the_parent_gpu_with_a_note(two_h100s):
    found = discover_gpus(env={"CUDA_VISIBLE_DEVICES": MIG_UUID})

    assert indices(found) == [1]
    (note,) = found.notes
    assert MIG_UUID in note
    assert UUIDS[1] in note
    assert "whole GPU" in note
    assert found.sensors[0].info.details["note"] == note


@pytest.mark.parametrize("visible", ["", "-1", " ", "NoDevFiles"])
def test_cuda_visible_devices_hiding_every_gpu_measures_none(two_h100s, visible):
    found = discover_gpus(env={"CUDA_VISIBLE_DEVICES": visible})

    assert found.sensors == []
    (note,) = found.notes
    assert "hides every GPU" in note


@pytest.mark.parametrize(("visible", "expected", "bad"), [
    ("0,7,1", [0], "7"),
    ("1,-1,0", [1], "-1"),
    ("GPU-ffff,0", [], "GPU-ffff"),
    ("0,MIG-00000000-0000-0000-0000-000000000000,1", [0],
     "MIG-00000000-0000-0000-0000-000000000000"),
])
def test_invalid_entry_and_later_ones_are_ignored_like_cuda(two_h100s, visible, expected, bad):
    found = discover_gpus(env={"CUDA_VISIBLE_DEVICES": visible})

    assert indices(found) == expected
    (note,) = found.notes
    assert f"{bad!r}" in note
    assert "later entries are ignored" in note


def test_ambiguous_uuid_prefix_is_an_invalid_entry(three_gpus_shared_prefix):
    found = discover_gpus(env={"CUDA_VISIBLE_DEVICES": "0,GPU-bbbb,1"})

    assert indices(found) == [0]
    assert any("'GPU-bbbb'" in n and "ignored" in n for n in found.notes)


def test_unique_uuid_prefix_among_similar_ones(three_gpus_shared_prefix):
    found = discover_gpus(env={"CUDA_VISIBLE_DEVICES": "GPU-bbbbc"})

    assert indices(found) == [2]


def test_indices_on_mixed_models_warn_about_cuda_ordering(fake_nvml):
    fake_nvml(FakeGPU(name="NVIDIA A100-SXM4-80GB", uuid=UUIDS[0]),
              FakeGPU(name="NVIDIA H100 80GB HBM3", uuid=UUIDS[1]))

    found = discover_gpus(env={"CUDA_VISIBLE_DEVICES": "1"})
    assert indices(found) == [1]
    assert any("CUDA_DEVICE_ORDER=PCI_BUS_ID" in n for n in found.notes)

    pci_order = discover_gpus(env={"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert pci_order.notes == []


# -- explicit gpus= ------------------------------------------------------------------------------
def test_explicit_gpus_override_cuda_visible_devices(two_h100s):
    found = discover_gpus([UUIDS[1], 0], env={"CUDA_VISIBLE_DEVICES": "0"})

    assert indices(found) == [1, 0]


def test_explicit_gpu_that_does_not_exist_is_a_config_error(two_h100s):
    with pytest.raises(ConfigError, match=r"'5' matches no NVIDIA GPU.*2 found"):
        discover_gpus([5])


def test_explicit_unknown_uuid_is_a_config_error(two_h100s):
    with pytest.raises(ConfigError, match="GPU-ffff"):
        discover_gpus(["GPU-ffff"])


def test_explicit_gpus_must_be_a_list(two_h100s):
    with pytest.raises(ConfigError, match="must be a list"):
        discover_gpus("0")  # type: ignore[arg-type]


def test_explicit_empty_gpus_measures_none(two_h100s):
    found = discover_gpus([])

    assert found.sensors == []
    assert found.notes == ["gpus=[] given: GPUs are not measured."]


# -- no driver -----------------------------------------------------------------------------------
def test_missing_pynvml_module_means_no_gpu_and_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError

    found = discover_gpus(env={})

    assert found.sensors == []
    (note,) = found.notes
    assert "nvidia-ml-py is not installed" in note


def test_nvml_library_not_found_means_no_gpu_and_a_note(fake_nvml):
    nvml = fake_nvml(1, library_missing=True)

    found = discover_gpus(env={})

    assert found.sensors == []
    (note,) = found.notes
    assert "NVML could not start" in note
    assert "NVML Shared Library Not Found" in note
    assert nvml.calls["nvmlInit"] == 1


def test_machine_without_gpus_says_so(fake_nvml):
    fake_nvml(0)

    found = discover_gpus(env={})

    assert found.sensors == []
    assert any("NVML found no NVIDIA GPU" in n for n in found.notes)
