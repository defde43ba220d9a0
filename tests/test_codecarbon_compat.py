"""emissions.csv checked by CodeCarbon itself (3.3.2, pinned in the test extras): every column of
its `EmissionsData`, in its order, with its types, so that `EmissionsData(**row)` takes every row
written by real runs (cloud regions included) and its carbonboard loaders read the file."""

from __future__ import annotations

import csv
import dataclasses
import os
import time

import pytest

from tracker import track
from tracker.errors import ConfigError
from tracker.rundir.runlog import CODECARBON_COLUMNS

codecarbon = pytest.importorskip("codecarbon")
pd = pytest.importorskip("pandas")
from codecarbon.output_methods.emissions_data import EmissionsData  # noqa: E402

FIELDS = dataclasses.fields(EmissionsData)
# CodeCarbon leaves these empty when it knows no location (offline); every other float
# column must hold a number
MAY_BE_EMPTY = {"longitude", "latitude"}
REGIONS = ["DE", "US-CA", "SE-SE3", "gcp:europe-west4", "aws:us-east-1", "azure:westeurope",
           "ccf:aws:eu-west-1"]
COUNTRY = {"DE": "DEU", "US-CA": "USA", "SE-SE3": "SWE", "gcp:europe-west4": "NLD",
           "aws:us-east-1": "USA", "azure:westeurope": "NLD", "ccf:aws:eu-west-1": "IRL"}


@pytest.fixture(scope="module")
def emissions_csv(tmp_path_factory, fake_gpu_sensors):
    """Real runs in several regions, GPU only (CPU and RAM not measured) and CPU/RAM only."""
    root = tmp_path_factory.mktemp("cc")
    for i, region in enumerate(REGIONS):
        kw = (dict(sensors=fake_gpu_sensors, cpu=False, ram=False) if i % 2 == 0
              else dict(gpus=[], cpu_tdp_w=50))
        with track(f"cc-{region}", region=region, output_dir=root, rate_hz=50, **kw):
            time.sleep(1.2)    # the CPU/RAM model reads once a second
    return root / "emissions.csv"


@pytest.fixture(scope="module")
def fake_gpu_sensors():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fakes"))
    from fake_nvml import UUIDS, Constant, FakeGPU, FakeNVML

    from tracker.sensors.nvidia import discover_gpus

    gpu = FakeGPU(name="Fake GPU 200 W", uuid=UUIDS[0], profile=Constant(200.0),
                  has_counter=False, has_instant=False, power_limit_w=300.0)
    return discover_gpus(nvml=FakeNVML([gpu]), env={}).sensors


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    return header, rows


def test_every_codecarbon_column_first_in_its_order(emissions_csv):
    header, rows = read(emissions_csv)
    assert [f.name for f in FIELDS] == CODECARBON_COLUMNS   # our list is CodeCarbon's
    assert header[:len(FIELDS)] == [f.name for f in FIELDS]
    assert len(rows) == len(REGIONS)


def typed(cell: str, field: dataclasses.Field):
    if field.type in ("float", float):
        if cell == "" and field.name in MAY_BE_EMPTY:
            return None
        return float(cell)      # raises on a blank: CodeCarbon writes a number there
    return cell


def test_emissions_data_loads_every_row(emissions_csv):
    _, rows = read(emissions_csv)
    for row in rows:
        EmissionsData(**{f.name: row[f.name] for f in FIELDS})     # the CSV's strings as is
        data = EmissionsData(**{f.name: typed(row[f.name], f) for f in FIELDS})
        assert list(data.values) == [f.name for f in FIELDS]


def test_values_units_and_what_is_not_measured(emissions_csv):
    _, rows = read(emissions_csv)
    by_region = {r["grid_region"]: r for r in rows}
    for region, iso in COUNTRY.items():
        row = by_region[region]
        assert row["country_iso_code"] == iso, region          # cloud regions too
        assert row["country_name"], region
        cloud = region.split(":")[-2] if ":" in region else ""
        assert row["cloud_provider"] == cloud and row["on_cloud"] == ("Y" if cloud else "N")
        assert row["experiment_id"] == "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"
        missing = set(row["not_measured"].split(";"))
        assert {"water_consumed", "ram_used_gb", "wue"} <= missing
        # the CPU model's mean utilisation is written where the CPU was modelled, and only there
        modelled = row["cpu_method"] == "modeled"
        assert ("cpu_utilization_percent" in missing) is not modelled, region
        assert (0.0 <= float(row["cpu_utilization_percent"]) <= 100.0) if modelled \
            else float(row["cpu_utilization_percent"]) == 0.0
        # kWh and kg, as CodeCarbon: facility energy x factor = emissions
        assert float(row["emissions"]) == pytest.approx(
            float(row["energy_consumed"]) * float(row["gco2_per_kwh"]) / 1000, rel=1e-6)
        # GiB, as CodeCarbon (psutil total / 2**30)
        import psutil
        assert float(row["ram_total_size"]) == pytest.approx(
            psutil.virtual_memory().total / 2**30, abs=0.01)
    gpu_only = by_region["DE"]
    assert gpu_only["cpu_energy"] == "0.0" and gpu_only["cpu_method"] == "not measured"
    assert {"cpu_energy", "ram_energy"} <= set(gpu_only["not_measured"].split(";"))
    assert float(gpu_only["gpu_power"]) == pytest.approx(200.0, rel=0.02)
    no_gpu = by_region["US-CA"]
    assert (no_gpu["gpu_energy"], no_gpu["gpu_power"], no_gpu["gpu_count"]) == ("0.0", "0.0", "0")
    assert float(no_gpu["cpu_energy"]) > 0 and no_gpu["cpu_method"] == "modeled"


def test_carbonboard_loaders_read_the_file(emissions_csv):
    pytest.importorskip("dash")
    from codecarbon.viz.data import Data

    df = pd.read_csv(emissions_csv)
    for f in FIELDS:
        if f.type in ("float", float):
            assert pd.api.types.is_numeric_dtype(df[f.name]), f.name
    data = Data()
    for project in df.project_name.unique():
        table = Data.get_project_data(df, project)     # what the dashboard's callbacks call
        summary = Data.get_project_summary(table.data)
        energy = summary["total"]["energy_consumed"]
        assert energy > 0
        assert data.get_global_emissions_choropleth_data(energy)
        if summary["country_iso_code"] not in ("USA", "CAN"):
            assert data.get_regional_emissions_choropleth_data(energy,
                                                               summary["country_iso_code"])
        else:   # CodeCarbon 3.3.2's own US/Canada data breaks this loader, whoever wrote the row
            with pytest.raises(KeyError, match="regionCode"):
                data.get_regional_emissions_choropleth_data(1.0, summary["country_iso_code"])
        if summary["on_cloud"] == "N" or summary["cloud_provider"] == "gcp":
            # CodeCarbon 3.3.2's cloud table holds GCP only: its own AWS/Azure rows cannot be
            # charted either, so those are left out here
            _, chart = data.get_cloud_emissions_barchart_data(
                energy, summary["on_cloud"], summary["cloud_provider"],
                summary["cloud_region"])
            assert summary["on_cloud"] == "N" or len(chart) > 1


def test_codecarbon_writes_the_same_columns(emissions_csv, tmp_path):
    """CodeCarbon's own FileOutput, given one of our rows, writes exactly our first columns."""
    from codecarbon.output_methods.file import FileOutput

    header, rows = read(emissions_csv)
    row = rows[0]
    data = EmissionsData(**{f.name: typed(row[f.name], f) for f in FIELDS})
    FileOutput("emissions.csv", str(tmp_path)).out(data, None)
    theirs, _ = read(tmp_path / "emissions.csv")
    assert theirs == header[:len(FIELDS)]


def test_emissions_csv_path_option(tmp_path, monkeypatch, fake_gpu):
    monkeypatch.chdir(tmp_path)
    with track("p", sensors=fake_gpu, cpu=False, ram=False, output_dir=tmp_path / "runs",
               emissions_csv="logs/mine.csv") as run:       # relative to the current directory
        monkeypatch.chdir("/")                            # resolved at construction
    (row,) = read(tmp_path / "logs" / "mine.csv")[1]
    assert row["run_id"] == run.summary.run_id
    assert not (tmp_path / "runs" / "emissions.csv").exists()
    for bad in ("no", "yes", "results/", 1):
        with pytest.raises(ConfigError, match="emissions_csv must be True"):
            track("p", emissions_csv=bad, output_dir=tmp_path)
    with pytest.raises(ConfigError, match="is a directory"):
        os.makedirs(tmp_path / "d.csv")
        track("p", emissions_csv=tmp_path / "d.csv", output_dir=tmp_path)
