"""The sensor registry: built-in kinds, third-party kinds through the `energy_tracker.sensors`
entry point (a real dist-info on sys.path, not a mock), what breaks and how that is said, and
the end-to-end check: a machine with a fake NVIDIA GPU, a fake AMD GPU and a fake hwmon meter,
seen by `energy-tracker devices` and measured by a real tracked run whose totals, windows, CSV,
report and Prometheus metrics match the fakes' own counters."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from conftest import UUIDS, Constant, FakeGPU
from fake_amdsmi import AMD_UUIDS

from tracker import ConfigError, track
from tracker.sensors import registry
from tracker.sensors.base import COUNTER, INCLUDED_IN, MODELED, NODE, SAMPLED, Discovery

FAKES = Path(__file__).parent / "fakes"
FAST = dict(rate_hz=50, counter_interval_s=0.2, emissions_csv=False)


# -- the kinds ------------------------------------------------------------------------------------
def test_builtin_kinds_in_discovery_order():
    ks = registry.kinds()
    assert [k.name for k in ks] == ["nvidia", "amd", "hwmon", "cpu-ram"]
    by = {k.name: k for k in ks}
    assert by["amd"].extra == "amd" and by["nvidia"].extra is None
    assert by["nvidia"].components == ("gpu",) and by["amd"].components == ("gpu",)
    assert set(by["hwmon"].components) == {NODE, "cpu", "ram"}
    assert by["cpu-ram"].methods == (COUNTER, MODELED)
    assert by["nvidia"].cost_per_read_s == pytest.approx(3.9e-3)
    d = by["amd"].to_dict()
    assert d["name"] == "amd" and "discover" not in d and d["source"] == "built-in"
    json.dumps(d)   # plain data


def test_cpu_and_ram_off_are_said_once(tmp_path):
    found = registry.discover(registry.Options(gpus=[], cpu=False, ram=False,
                                               powercap_root=tmp_path / "none"))
    assert found.sensors == []
    assert found.notes[-2:] == ["cpu not measured (disabled by the user)",
                                "ram not measured (disabled by the user)"]


def test_gpus_naming_an_amd_gpu_on_a_machine_with_both_vendors(fake_nvml, fake_amdsmi,
                                                               tmp_path):
    fake_nvml(1)
    fake_amdsmi(1)
    opts = dict(cpu=False, ram=False, powercap_root=tmp_path / "none")
    found = registry.discover(registry.Options(gpus=[AMD_UUIDS[0]], **opts))
    assert [(s.name, s.info.details["uuid"]) for s in found.sensors] == [("gpu0", AMD_UUIDS[0])]
    assert any(n.startswith("gpus=: gpus= entry") and "NVIDIA" in n for n in found.notes)
    with pytest.raises(ConfigError, match="matches no NVIDIA GPU"):
        registry.discover(registry.Options(gpus=["GPU-typo"], **opts))


def test_clashing_names_get_the_kinds_prefix(fake_nvml, fake_amdsmi, tmp_path):
    fake_nvml(1)
    fake_amdsmi(2)
    found = registry.discover(registry.Options(cpu=False, ram=False,
                                               powercap_root=tmp_path / "none"))
    assert [s.name for s in found.sensors] == ["gpu0", "amd-gpu0", "gpu1"]
    assert [s.info.details["uuid"] for s in found.sensors] == [UUIDS[0], *AMD_UUIDS[:2]]


# -- plugins through the real entry-point mechanism -----------------------------------------------
PLUGIN = '''
"""A test package's sensor: an FPGA board with an energy counter (mJ), 75 W constant."""
import time
from tracker.sensors.base import COUNTER, Discovery, Sensor, SensorInfo
from tracker.sensors.registry import SensorKind

READS = []   # (time.monotonic(), counter mJ) of every read, for the test

class Board(Sensor):
    has_counter = True
    def __init__(self, i):
        self.born = time.monotonic() - 100.0
        self.info = SensorInfo(name=f"fpga{i}", component="fpga", method=COUNTER,
                               description="Test FPGA board (its energy counter)",
                               details={"board": i})
    def read_energy_j(self):
        mj = round(75.0 * (time.monotonic() - self.born) * 1000)
        READS.append((time.monotonic(), mj))
        return mj / 1000.0

def discover(options):
    return Discovery([Board(0)], ["fpga: one board found"])

KIND = SensorKind("fpga", ("fpga",), discover, reads="board energy counter (mJ)",
                  methods=(COUNTER,), cost_per_read_s=1e-5)
'''


def install_plugin(site: Path, module: str, source: str, entry: str, name: str = "fpga"
                   ) -> None:
    """A minimal installed distribution: the module and a dist-info with its entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module.replace('_', '-')}_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[energy_tracker.sensors]\n{name} = {entry}\n")


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    site = tmp_path / "site"

    def add(module: str, source: str, entry: str, name: str = "fpga") -> None:
        install_plugin(site, module, source, entry, name)
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, module, raising=False)

    yield add
    for m in [m for m in sys.modules if m.startswith("plug_")]:
        del sys.modules[m]


def test_a_plugin_sensor_appears_in_a_run_with_no_change_to_the_tracker(plugin_site, fake_nvml,
                                                                      tmp_path):
    plugin_site("plug_fpga", PLUGIN, "plug_fpga:KIND")
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)))
    assert "fpga" in [k.name for k in registry.kinds()]
    csv_path = tmp_path / "e.csv"
    run = track("with-plugin", cpu=False, ram=False, output_dir=tmp_path / "runs",
                **{**FAST, "emissions_csv": csv_path})
    import plug_fpga
    since = time.monotonic()
    with run, run.window("work"):
        time.sleep(0.3)
    s = run.summary
    assert list(s.components) == ["gpu", "fpga"]         # open set: after the known ones
    fpga = s.components["fpga"]
    reads = [mj for t, mj in plug_fpga.READS if t >= since]
    assert fpga.energy_j == pytest.approx((reads[-1] - reads[0]) / 1000.0, abs=1e-9)
    assert fpga.method == COUNTER and fpga.devices == ("fpga0",)
    assert s.energy_j == pytest.approx(s.components["gpu"].energy_j + fpga.energy_j,
                                       rel=1e-12)
    (w,) = s.windows
    assert set(w.by_component_j) == {"gpu", "fpga"}
    assert w.by_component_j["fpga"] == pytest.approx(75.0 * w.duration_s, rel=0.02)
    assert w.method_by_component["fpga"] == COUNTER
    assert "fpga: one board found" in s.notes
    assert "fpga " in s.format() and "fpga0:" in s.format()
    with open(csv_path, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["other_method"] == "fpga=counter"
    assert row["other_energy"] == f"fpga={fpga.energy_kwh:.9g}"
    assert row["it_energy_basis"] == "gpu+fpga"
    manifest = json.loads((run.run_dir / "run.json").read_text())
    assert [d["component"] for d in manifest["devices"]] == ["gpu", "fpga"]
    # the report rebuilt from the logs knows the plugin's device too
    from tracker.rebuild import rebuild_summary
    assert rebuild_summary(run.run_dir).components["fpga"].energy_j == pytest.approx(
        fpga.energy_j, abs=1e-3)


@pytest.mark.parametrize(("source", "entry", "says"), [
    ("x = 1\n", "plug_missing_module_xyz:KIND", "No module named 'plug_missing_module_xyz'"),
    ("KIND = 42\n", "plug_bad:KIND", "not iterable"),
    ("KIND = ['not a kind']\n", "plug_bad:KIND", "not a SensorKind"),
    ("def KIND():\n    raise RuntimeError('no board')\n", "plug_bad:KIND", "no board"),
])
def test_a_plugin_that_cannot_load_is_a_note(plugin_site, tmp_path, source, entry, says):
    plugin_site("plug_bad", source, entry, name="broken")
    notes: list[str] = []
    assert [k.name for k in registry.kinds(notes)] == ["nvidia", "amd", "hwmon", "cpu-ram"]
    (note,) = notes
    assert note.startswith("sensor plugin entry point 'broken'") and says in note
    run = track("ok", cpu=False, ram=False, gpus=[], output_dir=tmp_path, **FAST)
    assert note in run._discovery_notes


BAD_SENSORS = '''
from tracker.sensors.base import Discovery, Sensor, SensorInfo
from tracker.sensors.registry import SensorKind

class S(Sensor):
    has_power = True
    def __init__(self, name, component, method):
        self.info = SensorInfo(name=name, component=component, method=method, description="x")
        self.closed = False
    def read_power_w(self):
        return 1.0
    def close(self):
        self.closed = True

MADE = []

def discover(options):
    MADE[:] = [S("a", "fpga", "guess"), S("b", "tpu", "sampled"), S("c", "Bad Name", "sampled"),
               "not a sensor", S("ok", "fpga", "sampled")]
    return Discovery(MADE, [])

def broken(options):
    raise RuntimeError("bus error")

KINDS = [SensorKind("fpga", ("fpga",), discover),
         SensorKind("flaky", ("fpga",), broken),
         SensorKind("nvidia", ("gpu",), discover)]
'''


def test_bad_plugin_sensors_are_left_out_with_a_reason(plugin_site, tmp_path):
    plugin_site("plug_bad_sensors", BAD_SENSORS, "plug_bad_sensors:KINDS")
    found = registry.discover(registry.Options(gpus=[], cpu=False, ram=False,
                                               powercap_root=tmp_path / "none"))
    import plug_bad_sensors as mod
    assert [s.name for s in found.sensors] == ["ok"]
    text = "\n".join(found.notes)
    assert "fpga sensor 'a' not used: its method 'guess' is not one of" in text
    assert "fpga sensor 'b' not used: its component 'tpu' is not one its kind declares" in text
    assert "fpga sensor 'c' not used: its component 'Bad Name' is not a lower-case word" in text
    assert "fpga sensor 'str' not used: it is a str, not a tracker.sensors.base.Sensor" in text
    assert ("sensor kind 'flaky' (entry point 'fpga' (plug_bad_sensors:KINDS)) failed while "
            "looking for devices: RuntimeError: bus error") in text
    assert "a sensor kind named 'nvidia' is already registered" in text
    assert [s.closed for s in mod.MADE if not isinstance(s, str)] == [True, True, True, False]


CPU_PLUGIN = '''
from tracker.sensors.base import COUNTER, Discovery, Sensor, SensorInfo
from tracker.sensors.registry import SensorKind

class Socket(Sensor):
    has_counter = True
    def __init__(self):
        self.info = SensorInfo(name="cpu-bmc", component="cpu", method=COUNTER,
                               description="CPU energy from the BMC")
    def read_energy_j(self):
        return 1.0

KIND = SensorKind("bmc-cpu", ("cpu",), lambda o: Discovery([Socket()], []), order=35)
'''


def test_a_plugin_ahead_of_rapl_replaces_the_cpu_sensor(plugin_site, tmp_path):
    plugin_site("plug_cpu", CPU_PLUGIN, "plug_cpu:KIND", name="bmc")
    found = registry.discover(registry.Options(gpus=[], powercap_root=tmp_path / "none"))
    assert [(s.name, s.component) for s in found.sensors] == [("cpu-bmc", "cpu"),
                                                              ("ram", "ram")]
    assert all("CPU and RAM power are modeled" not in n for n in found.notes)


def test_a_later_kind_cannot_measure_the_cpu_twice(tmp_path):
    from tracker.sensors.model import CpuModelSensor
    late = registry.SensorKind("late", ("cpu",), lambda o: Discovery([CpuModelSensor()], []),
                               order=90, source="entry point 'late' (x:y)")
    found = registry.discover(registry.Options(gpus=[], powercap_root=tmp_path / "none"),
                              kinds_=[*registry.BUILTIN, late])
    assert [s.name for s in found.sensors] == ["cpu", "ram"]
    assert any("late sensor 'cpu' not used: cpu is already measured by another sensor" in n
               for n in found.notes)


# -- the machine of the issue: NVIDIA + AMD + a hwmon node meter ----------------------------------
@pytest.fixture
def three_meters(fake_nvml, fake_amdsmi, hwmon_tree):
    """A 300 W NVIDIA GPU, a 500 W AMD MI300X and a 1.5 kW ACPI node meter; every GPU counter
    read is recorded (time.monotonic(), value)."""
    nv = fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)))
    nv_reads: list[tuple[float, int]] = []
    real = nv.nvmlDeviceGetTotalEnergyConsumption

    def recorded(handle):
        mj = real(handle)
        nv_reads.append((time.monotonic(), mj))
        return mj

    nv.nvmlDeviceGetTotalEnergyConsumption = recorded
    amd = fake_amdsmi(1)
    hwmon_tree.acpi_power_meter(1500.0)
    hwmon_tree.bystanders()   # an amdgpu hwmon power file too: never read
    return nv_reads, amd.gpus[0], hwmon_tree


def test_a_run_on_nvidia_amd_and_a_node_meter(three_meters, tmp_path, monkeypatch):
    nv_reads, amd_gpu, tree = three_meters
    # devices are opened by start() (their probes read the counter too): the run's own reads
    # are those from the sampler's first tick on
    import tracker.sampler as sampler_module
    started: list[float] = []
    real_start = sampler_module.Sampler.start

    def start(self, *args, **kwargs):
        started.append(time.monotonic())
        return real_start(self, *args, **kwargs)

    monkeypatch.setattr(sampler_module.Sampler, "start", start)
    pytest.importorskip("prometheus_client")
    from tracker.prometheus import _Collector
    csv_path = tmp_path / "e.csv"
    # CPU and RAM stay on (here: the models): a node meter includes them, so cpu=False or
    # ram=False would leave the meter out
    run = track("three", hwmon_root=tree.root, powercap_root=tmp_path / "none",
                output_dir=tmp_path / "runs", report_html=True,
                **{**FAST, "emissions_csv": csv_path})
    with run:
        (since,) = started
        with run.window("train"):
            time.sleep(0.5)
        families = {f.name: f for f in _Collector(run).collect()}
        it_now = run.energy_j(0.0, run.measured_until())
        with run.window("eval", kind="eval"):
            time.sleep(0.2)
    s = run.summary
    by = {d.name: d for d in s.devices}
    assert set(by) == {"gpu0", "amd-gpu0", "node", "cpu", "ram"}
    # exact against each fake's own counter (reads made by the run; the log keeps mJ)
    nv = [mj for t, mj in nv_reads if t >= since]
    assert by["gpu0"].energy_j == pytest.approx((nv[-1] - nv[0]) / 1000.0, abs=1e-9)
    assert by["amd-gpu0"].energy_j == pytest.approx(amd_gpu.counted_j(since), abs=1e-3)
    node = by["node"]
    assert node.energy_j == pytest.approx(1500.0 * (node.end_s - node.start_s), rel=1e-9)
    assert [by[n].method for n in ("gpu0", "amd-gpu0", "node")] == [COUNTER, COUNTER, SAMPLED]
    # totals: the node meter is the IT total, the GPUs (both vendors: one component) its part
    assert list(s.components) == ["gpu", "cpu", "ram", NODE]
    gpu = s.components["gpu"]
    assert gpu.devices == ("gpu0", "amd-gpu0")
    assert gpu.energy_j == pytest.approx(by["gpu0"].energy_j + by["amd-gpu0"].energy_j)
    assert s.energy_j == pytest.approx(node.energy_j, rel=1e-12)
    assert all(d.details[INCLUDED_IN] == NODE for d in s.devices if d.name != "node")
    # windows
    train, ev = s.windows
    for w in (train, ev):
        assert w.energy_j == pytest.approx(1500.0 * w.duration_s, rel=1e-6)
        assert w.by_component_j["gpu"] == pytest.approx(800.0 * w.duration_s, rel=0.03)
    # CSV
    with open(csv_path, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["gpu_energy"]) == pytest.approx(gpu.energy_j / 3.6e6)
    assert float(row["node_energy"]) == pytest.approx(node.energy_j / 3.6e6)
    assert float(row["it_energy"]) == pytest.approx(node.energy_j / 3.6e6)
    assert row["gpu_count"] == "2"
    assert row["it_energy_basis"] == "node meter (includes gpu, cpu, ram)"
    # report: the text and the HTML
    out = io.StringIO()
    from tracker.cli import main
    with redirect_stdout(out):
        assert main(["report", str(run.run_dir)]) == 0
    text = out.getvalue()
    assert "node " in text and "(whole-node meter: the IT total; includes gpu, cpu, ram)" in text
    assert "amd-gpu0:" in text and "gpu0:" in text
    page = (run.run_dir / "report.html").read_text()
    assert "amd-gpu0" in page and f"{node.energy_j:,.1f} J" in page   # the IT energy card
    assert f"{s.components[NODE].mean_power_w:,.1f} W" in page        # mean power: the meter's
    # Prometheus, scraped mid-run: the meter sums to the IT energy; the GPUs are its parts
    energy = families["energy_tracker_energy_joules"].samples
    parts = families["energy_tracker_part_energy_joules"].samples
    assert [(x.labels["device"], x.labels["component"], x.labels["method"]) for x in energy] == [
        ("node", NODE, SAMPLED)]
    assert sum(x.value for x in energy) == pytest.approx(it_now, rel=1e-9)
    assert sorted((x.labels["device"], x.labels["component"], x.labels["part_of"])
                  for x in parts) == [("amd-gpu0", "gpu", NODE), ("cpu", "cpu", NODE),
                                      ("gpu0", "gpu", NODE), ("ram", "ram", NODE)]


def test_energy_tracker_devices_lists_the_three(hwmon_tree, tmp_path):
    hwmon_tree.acpi_power_meter(1500.0)
    hwmon_tree.bystanders()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENERGY_TRACKER_", "CUDA_", "HIP_", "ROCR_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(FAKES / "nvml_site"), str(FAKES / "amdsmi_site")]),
               FAKE_NVML_WATTS="300", FAKE_AMDSMI_WATTS="500")

    def devices(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tracker", "devices", "--hwmon-root",
                               str(hwmon_tree.root), "--powercap-root", str(tmp_path / "none"),
                               *extra], capture_output=True, text=True, env=env, timeout=60)

    result = devices("--json")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    rows = {d["name"]: d for d in got["devices"]}
    assert {n: (rows[n]["component"], rows[n]["method"]) for n in ("gpu0", "amd-gpu0", "node")
            } == {"gpu0": ("gpu", COUNTER), "amd-gpu0": ("gpu", COUNTER),
                  "node": (NODE, SAMPLED)}
    assert rows["amd-gpu0"]["details"]["vendor"] == "AMD"
    assert rows["gpu0"]["details"][INCLUDED_IN] == NODE
    assert {k["name"]: k["found"] for k in got["kinds"]} == {
        "nvidia": ["gpu0"], "amd": ["amd-gpu0"], "hwmon": ["node"], "cpu-ram": ["cpu", "ram"]}
    text = devices()
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    for name, comp, method in (("gpu0", "gpu", "counter"), ("amd-gpu0", "gpu", "counter"),
                               ("node", "node", "sampled")):
        (line,) = [x for x in lines if x.split()[0] == name]
        assert line.split()[1:3] == [comp, method]
    assert any(x.startswith("amd-gpu0") and x.endswith("[part of node]") for x in lines)
    assert lines[-1].startswith("sensor kinds: nvidia (1 found); amd (1 found, extra [amd]); "
                                "hwmon (1 found); cpu-ram (2 found)")
