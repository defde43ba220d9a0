"""Measured node and CPU power from hwmon, on fake sysfs trees laid out as the kernel lays out
the real ones (tests/fakes/fake_hwmon.py): ACPI power meters (old and new layouts), NVIDIA
Grace and Grace Hopper rails, amd_energy, and drivers that must be left alone. Then whole runs
and a job: a whole-node meter is the IT total and nothing is counted twice."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import psutil
import pytest
from conftest import UUIDS, Constant, FakeGPU
from test_rapl import FakePowercap, _as_unprivileged_user

from tracker import track
from tracker.job.merge import merge
from tracker.sensors import registry
from tracker.sensors.base import COUNTER, INCLUDED_IN, MODELED, NODE, SAMPLED
from tracker.sensors.hwmon import HwmonSensor, discover_hwmon, list_meters

FAST = dict(rate_hz=50, counter_interval_s=0.2, emissions_csv=False)


def found_names(found) -> list[str]:
    return [s.name for s in found.sensors]


# -- listing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("modern", [False, True])
def test_an_acpi_power_meter_is_a_whole_node_meter(hwmon_tree, modern):
    hwmon_tree.bystanders()
    path = hwmon_tree.acpi_power_meter(812.5, interval_ms=2000, modern=modern)
    (m,) = list_meters(hwmon_tree.root)        # coretemp, amdgpu and nvme are not listed
    assert (m.role, m.driver, m.quantity) == (NODE, "power_meter", "power")
    assert m.path.resolve() == path.resolve()  # through hwmonN/device on the old layout
    assert m.interval_s == 2.0 and m.includes == ("gpu", "cpu", "ram")
    (node,) = discover_hwmon(root=hwmon_tree.root).sensors
    assert (node.name, node.component, node.method) == ("node", NODE, SAMPLED)
    assert node.has_power and not node.has_counter
    assert node.power_interval_s == 1.0
    assert node.read_power_w() == 812.5         # µW in the file
    d = node.info.details
    assert d["scope"] == "node" and d["includes"] == ["gpu", "cpu", "ram"]
    assert d["average_interval_s"] == 2.0 and d["driver"] == "power_meter"
    assert d["model_number"] == "PWR MTR" and d["read_s"] >= 0
    assert "Whole-node input power (ACPI power meter)" in node.info.description
    node.close()


def test_a_battery_meter_is_not_the_machines_input(hwmon_tree):
    hwmon_tree.acpi_power_meter(15.0, is_battery=True)
    (m,) = list_meters(hwmon_tree.root)
    assert m.role is None and "battery" in m.why
    assert discover_hwmon(root=hwmon_tree.root).sensors == []


def test_no_hwmon_tree_is_nothing(tmp_path):
    assert list_meters(tmp_path / "absent") == []
    found = discover_hwmon(root=tmp_path / "absent")
    assert found.sensors == [] and found.notes == []


def test_grace_socket_meters_measure_cpu_and_ram_and_skip_the_rails(hwmon_tree):
    files = hwmon_tree.grace(sockets=2, watts={"Grace Power Socket 0": 210.0,
                                               "Grace Power Socket 1": 190.0})
    meters = list_meters(hwmon_tree.root)
    assert [(m.label, m.role) for m in meters] == [
        ("Grace Power Socket 0", "cpu"), ("CPU Power Socket 0", None),
        ("SysIO Power Socket 0", None), ("Grace Power Socket 1", "cpu"),
        ("CPU Power Socket 1", None), ("SysIO Power Socket 1", None)]
    assert all("inside Grace socket" in m.why for m in meters if m.role is None)
    found = discover_hwmon(root=hwmon_tree.root)
    assert found_names(found) == ["cpu-socket0", "cpu-socket1"]
    s0 = found.sensors[0]
    assert s0.component == "cpu" and s0.method == SAMPLED
    assert s0.info.details["covers"] == ["cpu", "ram"]
    assert Path(s0.info.details["sysfs_path"]).resolve() == files["Grace Power Socket 0"]
    assert [s.read_power_w() for s in found.sensors] == [210.0, 190.0]
    assert "Grace CPU socket 0 with its LPDDR5X memory" in s0.info.description
    assert any("RAM is measured with the CPU" in n for n in found.notes)


def test_grace_hopper_module_meters_are_node_meters(hwmon_tree):
    hwmon_tree.grace(sockets=2, module=True)
    found = discover_hwmon(root=hwmon_tree.root)
    assert found_names(found) == ["module0", "module1", "cpu-socket0", "cpu-socket1"]
    assert [s.component for s in found.sensors] == [NODE, NODE, "cpu", "cpu"]
    assert "Grace Hopper module 0: GPU, HBM, CPU, LPDDR5X" in found.sensors[0].info.description


def test_amd_energy_socket_counters_measure_the_cpu(hwmon_tree):
    files = hwmon_tree.amd_energy(2, 4, watts_per_socket=150.0, start_uj=5_000_000_000)
    meters = list_meters(hwmon_tree.root)
    assert [(m.label, m.socket, m.path) for m in meters] == [
        ("Esocket0", 0, files[0]), ("Esocket1", 1, files[1])]   # the 8 cores are inside
    found = discover_hwmon(root=hwmon_tree.root)
    s0, s1 = found.sensors
    assert (s0.name, s0.component, s0.method) == ("cpu-socket0", "cpu", COUNTER)
    assert s0.has_counter and not s0.has_power
    w = hwmon_tree.writers[0]
    w._put(w.first + 2_500_000)             # +2.5 J, written in place (the file stays open)
    assert s0.read_energy_j() == 2.5
    w._put(w.first + 4_000_000)
    assert s0.read_energy_j() == 4.0
    w._put(1_000_000)                       # the counter restarted (driver reloaded)
    assert s0.read_energy_j() == 5.0 and s0.resets == 1
    assert s1.read_energy_j() == 0.0


def test_amd_energy_root_only_falls_back_with_the_fix(hwmon_tree, tmp_path):
    hwmon_tree.amd_energy(1, 2, watts_per_socket=100.0, readable=False)
    with _as_unprivileged_user():
        found = registry.discover(registry.Options(hwmon_root=hwmon_tree.root, gpus=[],
                                                   powercap_root=tmp_path / "none"))
    assert [s.name for s in found.sensors] == ["cpu", "ram"]      # the models
    assert [s.method for s in found.sensors] == [MODELED, MODELED]
    (note,) = [n for n in found.notes if "not measured: permission denied" in n]
    assert "permission denied" in note and "root-only since Linux 5.10" in note
    assert f"sudo chmod o+r {hwmon_tree.root}/hwmon*/energy*_input" in note


def test_a_power_read_error_raises_sensor_failed(hwmon_tree):
    path = hwmon_tree.acpi_power_meter(500.0)
    (node,) = discover_hwmon(root=hwmon_tree.root).sensors
    path.write_text("garbage\n")
    from tracker.errors import SensorFailed
    with pytest.raises(SensorFailed, match="cannot read"):
        node.read_power_w()


def test_an_unused_meter_cannot_be_opened(hwmon_tree):
    hwmon_tree.grace(sockets=1)
    rail = next(m for m in list_meters(hwmon_tree.root) if m.role is None)
    from tracker.errors import SensorUnavailable
    with pytest.raises(SensorUnavailable, match="is not used"):
        HwmonSensor(rail, "x")


# -- choosing, through the registry -------------------------------------------------------------
def test_amd_energy_replaces_rapl_for_the_cpu_and_rapl_keeps_the_dram(hwmon_tree, tmp_path):
    hwmon_tree.amd_energy(1, 2, watts_per_socket=100.0)
    pc = FakePowercap(tmp_path / "powercap")
    pkg = pc.zone("intel-rapl:0", "package-0", 10_000)
    pc.zone("intel-rapl:0:0", "dram", 500, parent=pkg)
    found = registry.discover(registry.Options(hwmon_root=hwmon_tree.root, gpus=[],
                                               powercap_root=pc.root, cpu_tdp_w=200))
    assert [(s.name, s.component, s.method) for s in found.sensors] == [
        ("cpu-socket0", "cpu", COUNTER), ("ram-pkg0", "ram", COUNTER)]
    assert "cpu_tdp_w=200 is not used: CPU energy is measured by hwmon." in found.notes


def test_grace_socket_means_no_ram_model(hwmon_tree, tmp_path):
    hwmon_tree.grace(sockets=1)
    found = registry.discover(registry.Options(hwmon_root=hwmon_tree.root, gpus=[],
                                               powercap_root=tmp_path / "none"))
    assert [s.name for s in found.sensors] == ["cpu-socket0"]


def test_a_node_meter_makes_everything_else_a_part_of_it(hwmon_tree, fake_nvml, tmp_path):
    fake_nvml(1)
    hwmon_tree.acpi_power_meter(900.0)
    found = registry.discover(registry.Options(hwmon_root=hwmon_tree.root,
                                               powercap_root=tmp_path / "none"))
    assert [(s.name, s.component) for s in found.sensors] == [
        ("gpu0", "gpu"), ("node", NODE), ("cpu", "cpu"), ("ram", "ram")]
    assert [s.info.details.get(INCLUDED_IN) for s in found.sensors] == [NODE, None, NODE, NODE]
    assert ("whole-node meter (node): the IT total is its energy; gpu, cpu, ram are measured "
            "too and shown as part of it (included in node), not added to it.") in found.notes


@pytest.mark.parametrize(("options", "why"), [
    (dict(node=False), "not used (node=False)"),
    (dict(cpu=False), "cpu=False asks not to count them"),
    (dict(ram=False), "ram=False asks not to count them"),
])
def test_a_node_meter_can_be_left_out(hwmon_tree, tmp_path, options, why):
    hwmon_tree.acpi_power_meter(900.0)
    found = registry.discover(registry.Options(hwmon_root=hwmon_tree.root, gpus=[],
                                               powercap_root=tmp_path / "none", **options))
    assert NODE not in [s.component for s in found.sensors]
    assert not any(s.info.details.get(INCLUDED_IN) for s in found.sensors)
    assert any(why in n for n in found.notes)


def test_the_hwmon_root_comes_from_the_environment(hwmon_tree, monkeypatch, tmp_path):
    hwmon_tree.acpi_power_meter(900.0)
    monkeypatch.setenv("ENERGY_TRACKER_HWMON_ROOT", str(hwmon_tree.root))
    found = registry.discover(registry.Options(gpus=[], powercap_root=tmp_path / "none"))
    assert "node" in [s.name for s in found.sensors]


# -- runs -----------------------------------------------------------------------------------------
@pytest.fixture
def machine(monkeypatch):
    """psutil's view of the machine, for the RAM model: 64 GiB."""
    from types import SimpleNamespace
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(total=64 * 1024**3))


def test_a_run_with_a_node_meter_totals_the_meter_exactly(hwmon_tree, fake_nvml, machine,
                                                          tmp_path):
    """A node meter at a constant 1.2 kW, a 300 W GPU, amd_energy CPU counters and the RAM
    model: the IT total is the meter's energy exactly, the GPU, CPU and RAM are parts of it
    (in the summary, windows, CSV, Prometheus) and never added to it."""
    gpu = FakeGPU(uuid=UUIDS[0], profile=Constant(300.0))
    fake_nvml(gpu)
    hwmon_tree.acpi_power_meter(1200.0)
    hwmon_tree.amd_energy(1, 4, watts_per_socket=180.0, start_uj=7_000_000_000)
    csv_path = tmp_path / "e.csv"
    run = track("node-meter", hwmon_root=hwmon_tree.root, powercap_root=tmp_path / "none",
                output_dir=tmp_path / "runs", **{**FAST, "emissions_csv": csv_path})
    with run:   # the run's first read of the CPU counter is its value before the writer starts
        hwmon_tree.start()
        with run.window("train"):
            time.sleep(0.6)
        with run.window("eval", kind="eval"):
            time.sleep(0.3)
        final_uj = hwmon_tree.writers[0].stop()   # ... and its final read, this value
    s = run.summary
    comps = s.components
    assert list(comps) == ["gpu", "cpu", "ram", NODE]
    node = next(d for d in s.devices if d.component == NODE)
    # constant power read at 1 Hz and at every edge: the trapezoid integral is exact
    assert node.energy_j == pytest.approx(1200.0 * (node.end_s - node.start_s), rel=1e-9)
    assert s.energy_j == pytest.approx(node.energy_j, rel=1e-12)          # the meter IS the total
    assert s.energy_j < sum(c.energy_j for c in comps.values())            # parts not added
    cpu = next(d for d in s.devices if d.component == "cpu")
    assert cpu.method == COUNTER
    assert cpu.energy_j == pytest.approx((final_uj - hwmon_tree.writers[0].first) / 1e6,
                                         abs=1e-3)
    assert all(d.details.get(INCLUDED_IN) == NODE for d in s.devices if d.component != NODE)
    assert s.facility_energy_j == pytest.approx(s.energy_j)
    assert s.emissions_kg == pytest.approx(s.energy_j / 3.6e6 * s.gco2_per_kwh / 1000, rel=1e-6)
    # windows: the meter's energy, the parts alongside
    for w in s.windows:
        assert w.energy_j == pytest.approx(1200.0 * w.duration_s, rel=1e-6)
        assert set(w.by_component_j) == {"gpu", "cpu", "ram", NODE}
        assert w.by_component_j[NODE] == pytest.approx(w.energy_j, rel=1e-12)
        assert w.method_by_component[NODE] == SAMPLED
    assert sum(p["energy_j"] for p in s.breakdown.values()) == pytest.approx(s.energy_j)
    text = s.format()
    assert "(whole-node meter: the IT total; includes gpu, cpu, ram)" in text
    assert "gpu" in text and "(part of node: included in its total)" in text
    assert "ram: not measured" not in text and "gpu: not measured" not in text
    # CSV: CodeCarbon's columns hold the parts; ours the meter and the basis
    with open(csv_path, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["node_energy"]) == pytest.approx(node.energy_j / 3.6e6)
    assert float(row["it_energy"]) == pytest.approx(s.energy_j / 3.6e6)
    assert float(row["gpu_energy"]) == pytest.approx(comps["gpu"].energy_j / 3.6e6)
    assert row["node_method"] == SAMPLED and row["cpu_method"] == COUNTER
    assert row["it_energy_basis"] == "node meter (includes gpu, cpu, ram)"
    # the terminal report's power line follows the meter's energy, not meter + parts
    from tracker.report.terminal import _run_points
    assert _run_points(run.run_dir, 10)[-1][1] == pytest.approx(node.energy_j, abs=1e-3)
    # run.json keeps what is part of what, so a rebuild agrees
    from tracker.rebuild import rebuild_summary
    again = rebuild_summary(run.run_dir)
    assert again.energy_j == pytest.approx(s.energy_j, rel=1e-9)


def test_prometheus_sums_to_the_meter(hwmon_tree, fake_nvml, tmp_path):
    pytest.importorskip("prometheus_client")
    from tracker.prometheus import _Collector
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)))
    hwmon_tree.acpi_power_meter(1000.0)
    with track("prom-node", hwmon_root=hwmon_tree.root, powercap_root=tmp_path / "none",
               output_dir=tmp_path, **FAST) as run:
        time.sleep(0.5)
        families = {f.name: f for f in _Collector(run).collect()}
        until = run.measured_until()
        it = run.energy_j(0.0, until)
    energy = families["energy_tracker_energy_joules"].samples
    parts = families["energy_tracker_part_energy_joules"].samples
    assert {s.labels["device"] for s in energy} == {"node"}
    assert sum(s.value for s in energy) == pytest.approx(it, rel=1e-9)
    assert {(s.labels["device"], s.labels["part_of"]) for s in parts} == {
        ("gpu0", "node"), ("cpu", "node"), ("ram", "node")}


def test_a_job_counts_the_node_meter_once(hwmon_tree, fake_nvml, tmp_path, monkeypatch):
    """Two ranks on one node with a node meter: one measures the meter (and CPU, RAM), each
    its GPU; the job's energy is the meter's, whoever measured the parts."""
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)),
              FakeGPU(uuid=UUIDS[1], profile=Constant(200.0)))
    hwmon_tree.acpi_power_meter(1500.0)
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks"))
    for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB"):
        monkeypatch.delenv(var, raising=False)

    def as_rank(rank: int) -> None:
        for k, v in dict(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=2, LOCAL_WORLD_SIZE=2,
                         ENERGY_TRACKER_NODE="node-a", TORCHELASTIC_RESTART_COUNT=0).items():
            monkeypatch.setenv(k, str(v))

    opts = dict(hwmon_root=hwmon_tree.root, powercap_root=tmp_path / "none",
                output_dir=tmp_path, job_timeout_s=2, **FAST)
    as_rank(0)
    a = track("a", job="node-job", **opts).start()
    as_rank(1)
    b = track("b", job="node-job", **opts).start()
    time.sleep(0.4)
    b.stop()
    a.stop()
    job = merge([a._job.job_dir])
    meters = [d for d in job.devices if d.component == NODE]
    assert len(meters) == 1
    assert {d.details.get("uuid") for d in job.devices if d.component == "gpu"} == set(UUIDS[:2])
    assert job.energy_j == pytest.approx(meters[0].energy_j, rel=1e-9)
    assert job.energy_j < sum(d.energy_j for d in job.devices)
    holder = a if any(d.component == NODE for d in a.own_summary.devices) else b
    other = b if holder is a else a
    assert other.own_summary.energy_j == 0.0       # only parts of the meter measured there
    assert any("included in the whole-node meter that another process" in n
               for n in other.own_summary.notes)
    saved = json.loads((Path(a._job.job_dir) / "summary.json").read_text())
    assert saved["energy_j"] == pytest.approx(job.energy_j, rel=1e-9)
    # the HTML report's energy per node: the meter, not meter + parts
    from tracker.report.html import collect
    (series,) = collect(Path(a._job.job_dir)).nodes.values()
    assert max(j for _, j in series.energy.values()) == pytest.approx(job.energy_j, rel=1e-6)
