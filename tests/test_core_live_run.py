"""A tracked run with a live grid-intensity provider, end to end through `track()`."""

from __future__ import annotations

import json
import time

import pytest

from tracker import track

TOKEN = "em-secret-token-do-not-write"  # a fake token that must never reach disk


def test_unreachable_provider_falls_back_and_never_writes_the_token(fake_h100, tmp_path):
    # Port 9 on loopback (discard) has no listener here: connections are refused at once.
    with track("live", region="DE", live_intensity="electricitymaps:DE",
               intensity_token=TOKEN, intensity_base_url="http://127.0.0.1:9/v3",
               output_dir=tmp_path, cpu=False, ram=False, rate_hz=50) as run:
        time.sleep(1.0)
    summary = run.summary

    assert summary.status == "finished"
    assert summary.energy_j > 0
    live = summary.carbon["live"]
    assert live["provider"] == "electricitymaps"
    assert live["fallback_used"] is True
    parts = summary.carbon["parts"]
    assert parts and all(p["fallback"] for p in parts)
    # the offline annual factor of the run's region is what was applied, and said so
    assert summary.gco2_per_kwh == pytest.approx(run.factor.gco2_per_kwh)
    assert any("fallback" in n.lower() or "offline" in n.lower()
               for n in summary.carbon.get("notes", []) + [str(p) for p in parts])
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path
    assert TOKEN not in json.dumps(summary.to_dict())
    assert TOKEN not in repr(run._live)


def test_live_periods_are_logged_and_rebuilt(fake_h100, tmp_path, httpserver):
    from tracker.rebuild import rebuild_summary

    httpserver.expect_request("/intensity").respond_with_json(
        {"data": [{"from": "2026-11-23T10:00Z", "to": "2026-11-23T10:30Z",
                   "intensity": {"forecast": 120, "actual": 100, "index": "low"}}]})
    with track("uk", region="GB", live_intensity="uk", intensity_base_url=httpserver.url_for(""),
               output_dir=tmp_path, cpu=False, ram=False, rate_hz=50) as run:
        time.sleep(1.0)
    summary = run.summary

    assert summary.gco2_per_kwh == pytest.approx(100.0)
    assert summary.emissions_kg == pytest.approx(summary.facility_energy_kwh * 100.0 / 1000.0,
                                                 rel=1e-6)
    rebuilt = rebuild_summary(run.run_dir)
    assert rebuilt.emissions_kg == pytest.approx(summary.emissions_kg, rel=1e-9)


def test_prometheus_endpoint_serves_the_run(fake_h100, tmp_path):
    import socket

    import requests

    pytest.importorskip("prometheus_client")
    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with track("prom", region="FR", prometheus_port=port, output_dir=tmp_path, cpu=False,
               ram=False, rate_hz=50) as run:
        time.sleep(0.6)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        until = run.measured_until()
        expected = run.devices[0].curve.energy_at(until)
    line = next(ln for ln in text.splitlines()
                if ln.startswith("energy_tracker_energy_joules_total{") and 'device="gpu0"' in ln)
    assert 'method="counter"' in line and 'component="gpu"' in line
    # a run outside a job is a job of one: job = its name, rank 0, this machine's node
    assert 'job="prom"' in line and 'rank="0"' in line and 'node="' in line
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(expected, rel=0.05)
    assert 'energy_tracker_grid_gco2_per_kwh{' in text and 'region="FR"' in text
    power = next(ln for ln in text.splitlines() if ln.startswith("energy_tracker_power_watts{"))
    assert float(power.rsplit(" ", 1)[1]) == pytest.approx(300.0, rel=0.02)
    with pytest.raises(requests.ConnectionError):  # the endpoint closes with the run
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
