"""track() end to end on fake GPUs: energies, windows, failures, run files, configuration errors.

CPU and RAM are switched off (cpu=False, ram=False) unless a test is about them, so every joule
in these runs comes from a fake GPU whose true power is known. Tests about what the samples say
run on the hand-driven clock (`manual_clock`, tests/manual_time.py): exact on a loaded machine.
"""

from __future__ import annotations

import csv
import json
import sys
import threading
import time

import pytest
from conftest import UUIDS, Constant, FakeGPU

from tracker import ConfigError, UnknownRegionError, track
from tracker.carbon import resolve_factor
from tracker.rebuild import rebuild_summary

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2)

CODECARBON_COLUMNS = [
    "timestamp", "project_name", "run_id", "duration", "emissions", "emissions_rate",
    "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy",
    "energy_consumed", "country_iso_code", "region", "pue",
]


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def gpu_records(run_dir, name="gpu0") -> list[tuple[float, dict]]:
    out = []
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if name in rec.get("d", {}):
            out.append((rec["t"], rec["d"][name]))
    return out


# -- energies ------------------------------------------------------------------------------------
def test_one_second_at_300w_measured_by_the_counter(clocked_h100, manual_clock, tmp_path):
    with track("h100", output_dir=tmp_path, region="DE", pue=1.2, **FAST) as run:
        manual_clock.sleep(1.0)
    summary = run.summary

    gpu = summary.components["gpu"]
    (device,) = summary.devices
    assert summary.status == "finished"
    assert gpu.method == "counter"
    assert gpu.status == "ok"
    assert device.details["uuid"] == clocked_h100.uuid
    assert summary.duration_s == pytest.approx(1.0, abs=1e-6)
    # the counter is kept to the mJ in the log: 300 J to 1e-5
    assert gpu.energy_j == pytest.approx(300.0, rel=1e-5)
    assert device.mean_power_w == pytest.approx(300.0, rel=1e-5)
    assert device.peak_power_w == 300.0
    assert summary.energy_j == gpu.energy_j
    assert summary.facility_energy_j == pytest.approx(1.2 * gpu.energy_j, rel=1e-12)
    de = resolve_factor("DE").gco2_per_kwh
    # rel 1e-6: carbon accounting works on wall-clock seconds (~1.8e9), which costs ~1e-7
    assert summary.emissions_kg == pytest.approx(summary.facility_energy_kwh * de / 1000.0,
                                                 rel=1e-6)
    assert summary.grid["region_code"] == "DE"


def test_energy_covers_the_whole_reported_duration(clocked_h100, manual_clock, tmp_path):
    with track("h100", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(0.5)
    summary = run.summary

    # On the hand-driven clock the run is 0.5 s exactly: 1e-4 of it is 50 us, far below a
    # gap between t=0 and the first reading (5-20 ms when it was there).
    assert summary.duration_s == pytest.approx(0.5, abs=1e-6)
    assert summary.components["gpu"].mean_power_w == pytest.approx(300.0, rel=1e-4)


def test_gpu_without_counter_is_sampled(fake_nvml, manual_clock, tmp_path):
    fake_nvml(FakeGPU(name="Tesla P100-SXM2-16GB", uuid=UUIDS[1], profile=Constant(300.0),
                      has_counter=False, has_instant=False, power_limit_w=300.0,
                      clock=manual_clock))
    with track("p100", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(0.6)
    summary = run.summary

    gpu = summary.components["gpu"]
    assert gpu.method == "sampled"
    assert summary.devices[0].details["power_source"] == "nvmlDeviceGetPowerUsage"
    # a constant power integrated from t=0 to the end: the trapezoid rule is exact
    assert summary.duration_s == pytest.approx(0.6, abs=1e-6)
    assert gpu.energy_j == pytest.approx(300.0 * 0.6, rel=1e-6)
    assert summary.devices[0].mean_power_w == pytest.approx(300.0, rel=1e-6)


def test_two_gpus_are_summed_and_named(fake_nvml, manual_clock, tmp_path):
    nvml = fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0), clock=manual_clock),
                     FakeGPU(uuid=UUIDS[1], profile=Constant(100.0), clock=manual_clock))

    with track("pair", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(0.5)
    summary = run.summary

    gpu0, gpu1 = summary.devices
    assert (gpu0.name, gpu1.name) == ("gpu0", "gpu1")
    assert gpu0.mean_power_w == pytest.approx(300.0, rel=1e-4)
    assert gpu1.mean_power_w == pytest.approx(100.0, rel=1e-4)
    assert summary.components["gpu"].energy_j == pytest.approx(gpu0.energy_j + gpu1.energy_j)
    assert summary.components["gpu"].devices == ("gpu0", "gpu1")
    # NVML is initialised once for both GPUs and shut down once at stop, not once per GPU
    # (an extra shutdown would end NVML for the rest of the process too).
    assert nvml.calls["nvmlInit"] == 1 and nvml.calls["nvmlShutdown"] == 1


def test_cuda_visible_devices_limits_what_the_run_measures(fake_nvml, tmp_path, monkeypatch):
    fake_nvml(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", UUIDS[1])

    with track("visible", output_dir=tmp_path, **FAST) as run:
        time.sleep(0.1)

    assert [d.details["uuid"] for d in run.summary.devices] == [UUIDS[1]]


# -- windows -------------------------------------------------------------------------------------
def test_nested_windows(clocked_h100, manual_clock, tmp_path):
    with track("windows", output_dir=tmp_path, **FAST) as run, run.window("train") as train:
        manual_clock.sleep(0.2)
        with run.window("eval", kind="eval", split="val"):
            manual_clock.sleep(0.3)
        manual_clock.sleep(0.1)
    summary = run.summary

    outer, inner = summary.windows
    assert (outer.name, outer.kind, outer.parent) == ("train", "phase", None)
    assert (inner.name, inner.kind, inner.parent) == ("eval", "eval", train.id)
    assert inner.attrs == {"split": "val"}
    assert inner.duration_s == pytest.approx(0.3, abs=1e-6)
    assert outer.duration_s == pytest.approx(0.6, abs=1e-6)
    assert inner.energy_j == pytest.approx(300.0 * 0.3, rel=1e-4)
    assert outer.energy_j == pytest.approx(300.0 * 0.6, rel=1e-4)
    assert inner.energy_j < outer.energy_j
    assert inner.start_s >= outer.start_s and inner.end_s <= outer.end_s
    saved = json.loads((run.run_dir / "windows.json").read_text())
    assert [w["name"] for w in saved["windows"]] == ["train", "eval"]


def test_window_left_open_is_closed_at_stop(clocked_h100, manual_clock, tmp_path):
    run = track("open", output_dir=tmp_path, **FAST).start()
    manual_clock.sleep(0.1)
    run.begin_window("never closed")
    manual_clock.sleep(0.2)
    summary = run.stop()

    (w,) = summary.windows
    assert w.end_s == pytest.approx(summary.duration_s)
    assert w.duration_s == pytest.approx(0.2, abs=1e-6)
    assert w.energy_j == pytest.approx(300.0 * 0.2, rel=1e-4)


# -- failures ------------------------------------------------------------------------------------
def test_exception_in_tracked_code_writes_failed_summary_and_reraises(fake_h100, tmp_path):
    with pytest.raises(ValueError, match="loss is NaN"), \
            track("crash", output_dir=tmp_path, **FAST) as run:
        time.sleep(0.1)
        raise ValueError("loss is NaN")

    saved = json.loads((run.run_dir / "summary.json").read_text())
    assert saved["status"] == "failed"
    assert saved["energy_j"] > 0
    assert any("ValueError: loss is NaN" in n for n in saved["notes"])
    (row,) = read_rows(tmp_path / "emissions.csv")
    assert row["status"] == "failed"


def test_gpu_lost_mid_run_is_degraded_and_keeps_its_energy(fake_nvml, manual_clock, tmp_path):
    gpu = FakeGPU(fail_after_s=0.41, clock=manual_clock)   # between two ticks
    fake_nvml(gpu)

    with track("lost", output_dir=tmp_path, **FAST) as run:
        for _ in range(50):    # the training loop never sees the NVML error
            manual_clock.sleep(0.02)
    summary = run.summary

    (device,) = summary.devices
    assert device.status == "degraded"
    assert summary.components["gpu"].status == "degraded"
    assert any("GPU is lost" in e for e in device.errors)
    assert any("gpu0" in d and "GPU is lost" in d for d in summary.degraded)
    assert any("stopped answering" in e for e in device.errors)   # no longer polled
    records = gpu_records(run.run_dir)
    first_t, last_t = records[0][0], records[-1][0]
    lost_t = gpu.lost_at() - json.loads((run.run_dir / "run.json").read_text())["start_monotonic"]
    # read on every tick (50 Hz) until it was lost: the last reading is the tick before
    assert last_t < lost_t <= last_t + 1.0 / FAST["rate_hz"] + 1e-6
    assert device.energy_j == pytest.approx(300.0 * (last_t - first_t), rel=1e-4)
    assert summary.energy_j == device.energy_j


def test_run_duration_is_the_whole_run_when_the_gpu_is_lost(fake_nvml, manual_clock, tmp_path):
    fake_nvml(FakeGPU(fail_after_s=0.31, clock=manual_clock))

    with track("lost", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(1.0)

    # the run ends at its final tick (1 s), not at the lost GPU's last reading (0.3 s)
    assert gpu_records(run.run_dir)[-1][0] < 0.31
    assert run.summary.duration_s == pytest.approx(1.0, abs=1e-6)


def test_gpu_that_drops_out_after_reads_is_degraded_not_fatal(fake_nvml, manual_clock,
                                                               tmp_path):
    fake_nvml(FakeGPU(fail_after_reads=30, clock=manual_clock))

    with track("flaky", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(0.8)   # 40 ticks, 1-3 reads each: the 31st read comes in the run

    (device,) = run.summary.devices
    assert device.status == "degraded"
    assert device.energy_j is not None and device.energy_j > 0
    assert any("GPU is lost" in e for e in device.errors)


# -- stop ----------------------------------------------------------------------------------------
def test_stop_is_idempotent(fake_h100, tmp_path):
    run = track("twice", output_dir=tmp_path, **FAST).start()
    time.sleep(0.1)

    first = run.stop()
    second = run.stop()

    assert second is first
    assert run.summary is first
    assert len(read_rows(tmp_path / "emissions.csv")) == 1


def test_stop_from_two_threads_at_once_stops_once(fake_nvml, tmp_path):
    fake_nvml(FakeGPU(counter_read_s=0.004))   # an H100 counter read takes ~4 ms
    run = track("race", output_dir=tmp_path, **FAST).start()
    time.sleep(0.2)
    together = threading.Barrier(2)
    results = []

    def stop() -> None:
        together.wait()
        results.append(run.stop())

    threads = [threading.Thread(target=stop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert len(results) == 2
    assert results[0] is results[1]
    assert len(read_rows(tmp_path / "emissions.csv")) == 1


def test_summary_while_running_is_a_live_snapshot(clocked_h100, manual_clock, tmp_path):
    with track("live", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(0.4)
        live = run.summary
        assert live.status == "running"
        assert live.ended_utc is None
        assert live.duration_s == pytest.approx(0.4, abs=1e-6)
        assert live.components["gpu"].energy_j == pytest.approx(300.0 * 0.4, rel=1e-4)
        manual_clock.sleep(0.2)
    final = run.summary

    assert final.status == "finished"
    assert final.ended_utc is not None
    assert final.energy_j > live.energy_j


# -- run files -----------------------------------------------------------------------------------
def test_run_directory_files(fake_nvml, manual_clock, tmp_path):
    fake_nvml(*(FakeGPU(uuid=u, clock=manual_clock) for u in UUIDS[:2]))

    with track("files", output_dir=tmp_path, region="DE", **FAST) as run:
        manual_clock.sleep(0.3)
    summary = run.summary

    assert run.run_dir.parent == tmp_path
    lines = (run.run_dir / "samples.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) >= 15       # 0.3 s at 50 Hz, every tick logged
    assert all("t" in r for r in records)
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)
    readings = [r["d"]["gpu0"] for r in records if "d" in r]
    assert any("c" in g for g in readings) and all("w" in g and "j" in g for g in readings)

    manifest = json.loads((run.run_dir / "run.json").read_text())
    assert manifest["schema"] == 1
    assert manifest["run_id"] == summary.run_id
    assert [d["name"] for d in manifest["devices"]] == ["gpu0", "gpu1"]
    assert [d["details"]["uuid"] for d in manifest["devices"]] == list(UUIDS[:2])
    assert manifest["devices"][0]["method"] == "counter"

    saved = json.loads((run.run_dir / "summary.json").read_text())
    assert saved["status"] == "finished"
    assert saved["energy_j"] == pytest.approx(summary.energy_j)

    with open(tmp_path / "emissions.csv", newline="") as f:
        header = next(csv.reader(f))
    assert [c for c in header if c in CODECARBON_COLUMNS] == CODECARBON_COLUMNS
    (row,) = read_rows(tmp_path / "emissions.csv")
    assert row["project_name"] == "files"
    assert row["run_id"] == summary.run_id
    assert float(row["gpu_energy"]) == pytest.approx(summary.components["gpu"].energy_kwh)
    assert float(row["energy_consumed"]) == pytest.approx(summary.facility_energy_kwh)
    assert float(row["emissions"]) == pytest.approx(summary.emissions_kg)
    assert float(row["duration"]) == pytest.approx(summary.duration_s)
    # not measured: CodeCarbon's 0.0 (its loaders need numbers), and said so in our columns
    assert row["cpu_energy"] == "0.0" and row["ram_energy"] == "0.0"
    assert row["cpu_method"] == "not measured" and row["ram_method"] == "not measured"
    assert {"cpu_energy", "ram_energy", "cpu_power"} <= set(row["not_measured"].split(";"))
    assert "gpu_energy" not in row["not_measured"].split(";")
    assert row["gpu_count"] == "2"
    assert row["pue"] == "1.0"


def test_emissions_csv_names_the_country_like_codecarbon(fake_h100, tmp_path):
    with track("iso", output_dir=tmp_path, region="DE", **FAST) as run:
        time.sleep(0.05)

    (row,) = read_rows(tmp_path / "emissions.csv")
    assert row["run_id"] == run.summary.run_id
    assert row["country_iso_code"] == "DEU"
    assert row["country_name"] == "Germany"
    assert row["region"] == "DE"


def test_two_concurrent_runs_each_append_one_intact_row(fake_h100, tmp_path):
    runs = [track(f"job{i}", output_dir=tmp_path, **FAST).start() for i in range(2)]
    time.sleep(0.2)
    together = threading.Barrier(2)

    def finish(run) -> None:
        together.wait()
        run.stop()

    threads = [threading.Thread(target=finish, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    text = (tmp_path / "emissions.csv").read_text()
    assert text.count("timestamp,project_name") == 1
    rows = read_rows(tmp_path / "emissions.csv")
    assert sorted(r["run_id"] for r in rows) == sorted(r.run_id for r in runs)
    assert sorted(r["project_name"] for r in rows) == ["job0", "job1"]
    assert all(None not in r and None not in r.values() for r in rows)  # no short/long rows
    assert all(float(r["gpu_energy"]) > 0 for r in rows)


# -- decorator -----------------------------------------------------------------------------------
def test_decorator_makes_one_run_per_call(fake_h100, tmp_path):
    @track("decorated", output_dir=tmp_path, **FAST)
    def train(steps: int) -> int:
        time.sleep(0.05)
        return steps * 2

    assert train(3) == 6
    assert train(steps=1) == 2

    rows = read_rows(tmp_path / "emissions.csv")
    assert [r["project_name"] for r in rows] == ["decorated", "decorated"]
    assert rows[0]["run_id"] != rows[1]["run_id"]
    assert [r["status"] for r in rows] == ["finished", "finished"]
    assert len([p for p in tmp_path.iterdir() if (p / "run.json").exists()]) == 2


def test_decorated_function_exception_reaches_the_caller(fake_h100, tmp_path):
    @track("decorated", output_dir=tmp_path, **FAST)
    def train() -> None:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        train()
    (row,) = read_rows(tmp_path / "emissions.csv")
    assert row["status"] == "failed"


# -- no GPU, no region ---------------------------------------------------------------------------
def test_no_gpu_no_region_summary_names_the_world_average(fake_nvml, tmp_path):
    fake_nvml(0)

    with track("cpu only", output_dir=tmp_path, rate_hz=50,
               powercap_root=tmp_path / "no-powercap") as run:
        time.sleep(0.3)
    summary = run.summary

    assert "gpu" not in summary.components
    assert any("NVML found no NVIDIA GPU" in n for n in summary.notes)
    assert any(n.startswith("gpu: not measured") for n in summary.notes)
    assert summary.components["cpu"].method == "modeled"
    assert summary.grid["is_default"] is True
    assert summary.grid["region_code"] == "WORLD"
    assert "world average" in summary.grid["note"]
    world = resolve_factor(None).gco2_per_kwh
    assert summary.gco2_per_kwh == pytest.approx(world)
    assert "WORLD: World" in summary.format()


def test_without_pynvml_the_run_still_works(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.delenv("ENERGY_TRACKER_RUN_DIR", raising=False)

    with track("nothing", output_dir=tmp_path, **FAST) as run:
        time.sleep(0.05)
    summary = run.summary

    assert summary.status == "finished"
    assert summary.energy_j is None            # nothing measured is None, never 0
    assert summary.emissions_kg is None
    assert any("nvidia-ml-py is not installed" in n for n in summary.notes)


# -- bad input -----------------------------------------------------------------------------------
def test_unknown_region_lists_close_matches(tmp_path):
    with pytest.raises(UnknownRegionError) as err:
        track("typo", region="Germny", output_dir=tmp_path)

    assert isinstance(err.value, ConfigError)
    assert "DE" in err.value.suggestions
    assert "Did you mean: DE" in str(err.value)


@pytest.mark.parametrize(("option", "match"), [
    (dict(pue=-1.0), "pue"),
    (dict(pue=0.9), r"pue.*>= 1\.0"),
    (dict(pue=float("nan")), "pue"),
    (dict(rate_hz=0), "rate_hz"),
    (dict(rate_hz=-10), "rate_hz"),
    (dict(counter_interval_s=0), "counter_interval_s"),
    (dict(gco2_per_kwh=-5), "gco2_per_kwh"),
])
def test_bad_numbers_are_config_errors_at_construction(tmp_path, option, match):
    with pytest.raises(ConfigError, match=match):
        track("bad", output_dir=tmp_path / "runs", **option)

    assert not (tmp_path / "runs").exists()


def test_output_dir_that_is_a_file_is_a_config_error(tmp_path):
    occupied = tmp_path / "energy-runs"
    occupied.write_text("not a directory")

    with pytest.raises(ConfigError, match="writable directory"):
        track("bad", output_dir=occupied)
    with pytest.raises(ConfigError, match="writable directory"):
        track("bad", output_dir=occupied / "below")


def test_empty_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="name"):
        track("  ", output_dir=tmp_path)


def test_unknown_explicit_gpu_is_a_config_error_at_construction(fake_nvml, tmp_path):
    fake_nvml(2)

    with pytest.raises(ConfigError, match="'5' matches no NVIDIA GPU"):
        track("bad", gpus=[5], output_dir=tmp_path, **FAST)


def test_summary_rebuilt_from_the_files_equals_the_live_one(fake_h100, tmp_path):
    with track("rebuild", output_dir=tmp_path, **FAST) as run, run.window("train"):
        for _ in run.steps(range(40), samples=lambda b: 2):
            time.sleep(0.005)
    live = run.summary
    rebuilt = rebuild_summary(run.run_dir)

    assert rebuilt.status == "finished"
    assert rebuilt.energy_j == pytest.approx(live.energy_j, rel=1e-12)
    assert rebuilt.steps["count"] == live.steps["count"] == 40
    assert rebuilt.steps["energy_j_in_steps"] == pytest.approx(live.steps["energy_j_in_steps"],
                                                               rel=1e-9)
    assert [w.name for w in rebuilt.windows] == [w.name for w in live.windows] == ["train"]
    assert rebuilt.windows[0].energy_j == pytest.approx(live.windows[0].energy_j, rel=1e-12)


def test_summary_names_its_sampling_defaults_and_window_methods(fake_h100, tmp_path):
    with track("defaults", output_dir=tmp_path, cpu=False, ram=False) as run, \
            run.window("phase"):
        time.sleep(0.3)
    data = json.loads((run.run_dir / "summary.json").read_text())

    assert data["sampling"]["rate_hz"] == 10.0 and data["sampling"]["rate_source"] == "default"
    assert data["pue_source"].startswith("default")
    assert data["windows"][0]["method_by_component"] == {"gpu": "counter"}
    with track("explicit", output_dir=tmp_path, cpu=False, ram=False, rate_hz=20) as explicit:
        pass
    assert explicit.summary.sampling == dict(data["sampling"], rate_hz=20.0, rate_source="user")
