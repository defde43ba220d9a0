"""The summary's typed parts (cost, sampling, steps, carbon): dataclasses that write
summary.json as before, byte for byte, read old files back (keys they do not know kept), and
still read as the dicts they were for code that indexes them."""

from __future__ import annotations

import json
import time

import pytest
from conftest import UUIDS, Constant, FakeGPU

from tracker import track
from tracker.accounting.parts import as_part
from tracker.accounting.price import Cost, Price, parse_price
from tracker.accounting.steps import Steps
from tracker.errors import ConfigError
from tracker.summary import CarbonDetail, Sampling, Summary

FAST = dict(rate_hz=50, counter_interval_s=0.2, cpu=False, ram=False)


def test_a_run_summary_reads_back_to_the_same_bytes(fake_nvml, tmp_path):
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(200.0)))
    with track("parts", output_dir=tmp_path, price_per_kwh=0.3, currency="EUR",
               **FAST) as run, run.window("w"):
        for _ in range(5):
            with run.step(samples=8):
                time.sleep(0.02)
    s = run.summary
    assert isinstance(s.cost, Cost) and isinstance(s.sampling, Sampling)
    assert s.cost.currency == "EUR" and s.cost.price_per_kwh == 0.3
    assert s.cost.amount == pytest.approx(s.facility_energy_kwh * 0.3, rel=1e-12)
    assert s.sampling.rate_hz == 50 and s.sampling.rate_source == "user"
    assert isinstance(s.steps, Steps) and s.steps.count == 5 and s.steps.samples == 40
    assert isinstance(s.carbon, CarbonDetail) and s.carbon.emissions_kg == s.emissions_kg
    assert s.carbon.gco2_per_kwh_effective == s.gco2_per_kwh and s.carbon["parts"]
    assert s.steps.j_per_sample == pytest.approx(s.steps.energy_j_in_steps / 40, rel=1e-12)
    assert s.steps["groups"] is s.steps.groups and sum(g["steps"] for g in s.steps.groups) == 5
    (path,) = tmp_path.glob("*/summary.json")
    text = path.read_text()
    data = json.loads(text)
    assert list(data["cost"]) == ["amount", "currency", "price_per_kwh", "basis"]
    again = Summary.from_dict(data).to_dict()
    assert json.dumps(again) == json.dumps(data)   # same keys, same order, same values


def test_old_and_newer_parts_load_and_keep_what_they_hold():
    # an old summary's cost (a key this version no longer writes) and a newer sampling key
    cost = Cost.from_dict({"amount": 1.5, "currency": "USD", "price_per_kwh": 0.2,
                           "basis": "facility energy (IT x PUE)", "cost": 1.5})
    assert cost.amount == 1.5 and cost.extra == {"cost": 1.5}
    assert list(cost.to_dict()) == ["amount", "currency", "price_per_kwh", "basis", "cost"]
    sampling = Sampling.from_dict({"model_interval_s": 1.0, "rate_hz": 10.0, "new_key": "x"})
    assert sampling.to_dict() == {"model_interval_s": 1.0, "rate_hz": 10.0, "new_key": "x"}
    assert list(sampling.to_dict()) == ["model_interval_s", "rate_hz", "new_key"]   # its order
    assert Sampling.from_dict({}).to_dict() == {} and not Sampling.empty()
    running = Steps.from_dict({"count": 3, "note": "step groups are computed at stop"})
    assert running.count == 3 and running.groups is None
    assert running.to_dict() == {"count": 3, "note": "step groups are computed at stop"}


def test_parts_read_as_the_dicts_they_were():
    cost = Price(0.25, "EUR").cost(3.6e6)
    assert cost["amount"] == pytest.approx(0.25) and cost.get("currency") == "EUR"
    assert cost == {"amount": pytest.approx(0.25), "currency": "EUR", "price_per_kwh": 0.25,
                    "basis": "facility energy (IT x PUE)"}
    assert dict(cost)["price_per_kwh"] == 0.25 and "basis" in cost
    assert cost.get("missing") is None
    with pytest.raises(KeyError):
        cost["missing"]
    # a Summary made by hand with dicts holds the typed parts
    s = Summary(run_id="r", name="n", status="finished", started_utc="", ended_utc="",
                duration_s=1.0, devices=(), components={}, energy_j=1.0, pue=1.0,
                pue_source="user", facility_energy_j=1.0, emissions_kg=None,
                emissions_rate_kg_per_s=None, gco2_per_kwh=None, grid={}, carbon={},
                windows=(), steps={}, notes=(), degraded=(), sampling={"rate_hz": 5.0},
                cost={"amount": None, "currency": "mixed", "price_per_kwh": None,
                      "basis": "members were given different currencies, or some no price"})
    assert isinstance(s.sampling, Sampling) and s.sampling.rate_hz == 5.0
    assert isinstance(s.cost, Cost) and s.cost.amount is None
    assert s.to_dict()["sampling"] == {"rate_hz": 5.0}
    with pytest.raises(TypeError, match="a Cost part is a Cost or a dict"):
        as_part(Cost, 3.0)


def test_the_price_is_checked_where_it_is_declared():
    assert parse_price(None, None) is None
    assert parse_price(0.21, " EUR ") == Price(0.21, "EUR")
    with pytest.raises(ConfigError, match="without price_per_kwh"):
        parse_price(None, "EUR")
    with pytest.raises(ConfigError, match=r"out of range \[0, 1000\]"):
        parse_price(5000, "EUR")
    with pytest.raises(ConfigError, match="short code"):
        parse_price(0.2, "EURO-DOLLARS")
    with pytest.raises(ConfigError, match="price_per_kwh must be a number"):
        parse_price(True, "EUR")
