"""Live intensity providers against a local HTTP server speaking each API's JSON shape."""

from __future__ import annotations

import json
import logging
import time

import pytest
from grid_values import country
from werkzeug import Response

from tracker.carbon import (
    IntensityPeriod,
    LiveIntensity,
    account_emissions,
    make_live_intensity,
    resolve_factor,
)
from tracker.errors import ConfigError

TOKEN = "em-secret-token-3f9a1c"
GB_G, GB_YEAR = country("GB")   # the bundled table's value: tests follow the data

UK_NATIONAL = {
    "data": [{
        "from": "2024-05-01T12:00Z", "to": "2024-05-01T12:30Z",
        "intensity": {"forecast": 130, "actual": 127, "index": "low"},
    }]
}
UK_REGIONAL = {
    "data": [{
        "regionid": 13, "dnoregion": "UKPN London", "shortname": "London",
        "data": [{
            "from": "2024-05-01T12:00Z", "to": "2024-05-01T12:30Z",
            "intensity": {"forecast": 152, "index": "moderate"},
            "generationmix": [{"fuel": "gas", "perc": 30.1}, {"fuel": "wind", "perc": 40.2}],
        }],
    }]
}
EMAPS_LATEST = {
    "zone": "DE", "carbonIntensity": 302, "datetime": "2024-05-01T12:00:00.000Z",
    "updatedAt": "2024-05-01T11:41:05.000Z", "createdAt": "2024-04-28T12:44:33.000Z",
    "emissionFactorType": "lifecycle", "isEstimated": True, "estimationMethod": "TIME_SLICER",
}
EDS_CO2EMIS = {
    "total": 1234, "filters": '{"PriceArea":["DK1"]}', "sort": "Minutes5UTC DESC",
    "limit": 1, "dataset": "CO2Emis",
    "records": [{
        "Minutes5UTC": "2024-05-01T11:55:00", "Minutes5DK": "2024-05-01T13:55:00",
        "PriceArea": "DK1", "CO2Emission": 87.0,
    }],
}


@pytest.fixture
def gb():
    return resolve_factor("GB")


def wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def run_until_fetched(live: LiveIntensity, count: int = 1) -> LiveIntensity:
    live.start()
    wait_for(lambda: live.status()["ok_count"] + live.status()["error_count"] >= count)
    live.stop()
    return live


def uk(httpserver, fallback, **kwargs) -> LiveIntensity:
    kwargs.setdefault("backoff_s", 0.01)
    return LiveIntensity("uk", kwargs.pop("zone", None), fallback,
                         base_url=httpserver.url_for(""), **kwargs)


def test_uk_national(httpserver, gb):
    httpserver.expect_request("/intensity").respond_with_json(UK_NATIONAL)
    live = run_until_fetched(uk(httpserver, gb))
    [p] = live.periods()
    assert (p.gco2_per_kwh, p.fallback, p.provider, p.zone) == (127.0, False, "uk", "GB")
    assert p.end_wall is not None and p.end_wall >= p.start_wall
    status = live.status()
    assert status["ok_count"] == 1 and status["last_error"] is None
    assert not status["fallback_used"] and status["last_observed"] == "2024-05-01T12:00Z"


def test_uk_national_without_actual_uses_forecast(httpserver, gb):
    payload = json.loads(json.dumps(UK_NATIONAL))
    payload["data"][0]["intensity"]["actual"] = None
    httpserver.expect_request("/intensity").respond_with_json(payload)
    assert run_until_fetched(uk(httpserver, gb)).periods()[0].gco2_per_kwh == 130.0


def test_uk_regional(httpserver, gb):
    httpserver.expect_request("/regional/regionid/13").respond_with_json(UK_REGIONAL)
    live = run_until_fetched(make_live_intensity("uk:13", gb, base_url=httpserver.url_for("")))
    [p] = live.periods()
    assert (p.gco2_per_kwh, p.zone, p.fallback) == (152.0, "13", False)


def test_uk_http_500_falls_back_after_retries(httpserver, gb):
    httpserver.expect_request("/intensity").respond_with_data("oops", status=500)
    live = run_until_fetched(uk(httpserver, gb, retries=2))
    [p] = live.periods()
    assert p.fallback and p.gco2_per_kwh == GB_G
    assert p.note == (
        f"uk: HTTP 500 after 3 tries; offline annual factor for GB (Ember {GB_YEAR}) used")
    assert len(httpserver.log) == 3
    status = live.status()
    assert status["last_error"] == "HTTP 500 after 3 tries" and status["fallback_used"]


def test_malformed_json_falls_back(httpserver, gb):
    httpserver.expect_request("/intensity").respond_with_data(
        '{"data": [', content_type="application/json"
    )
    live = run_until_fetched(uk(httpserver, gb))
    [p] = live.periods()
    assert p.fallback and "malformed JSON" in p.note
    assert len(httpserver.log) == 1  # not worth retrying


def test_unexpected_shape_falls_back(httpserver, gb):
    httpserver.expect_request("/intensity").respond_with_json({"data": []})
    live = run_until_fetched(uk(httpserver, gb))
    assert live.periods()[0].fallback
    assert live.status()["last_error"].startswith("unexpected response")


def test_429_retry_after_is_honoured(httpserver, gb):
    httpserver.expect_oneshot_request("/intensity").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "1"}
    )
    httpserver.expect_request("/intensity").respond_with_json(UK_NATIONAL)
    live = uk(httpserver, gb, retries=1)
    t0 = time.monotonic()
    run_until_fetched(live)
    assert time.monotonic() - t0 >= 0.9  # waited Retry-After, not backoff_s=0.01
    assert live.periods()[0].gco2_per_kwh == 127.0
    assert live.status()["ok_count"] == 1


def test_429_retry_after_is_capped(httpserver, gb):
    httpserver.expect_request("/intensity").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "3600"}
    )
    live = uk(httpserver, gb, retries=1, max_retry_after_s=0.2)
    t0 = time.monotonic()
    run_until_fetched(live)
    assert time.monotonic() - t0 < 2
    assert live.status()["last_error"] == "HTTP 429 (rate limited) after 2 tries"


def test_stop_interrupts_a_retry_after_wait(httpserver, gb):
    httpserver.expect_request("/intensity").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "30"}
    )
    live = uk(httpserver, gb, retries=1).start()
    wait_for(lambda: len(httpserver.log) == 1)
    t0 = time.monotonic()
    live.stop()
    assert time.monotonic() - t0 < 1
    wait_for(lambda: live.status()["error_count"] == 1)
    assert "stopped before retry 1" in live.status()["last_error"]


def test_slow_server_times_out(httpserver, gb):
    def slow(request):
        time.sleep(0.6)
        return Response(json.dumps(UK_NATIONAL), content_type="application/json")

    httpserver.expect_request("/intensity").respond_with_handler(slow)
    live = uk(httpserver, gb, timeout_s=0.1, retries=0)
    t0 = time.monotonic()
    live.start()
    assert time.monotonic() - t0 < 0.1  # start() never waits for the network
    wait_for(lambda: live.status()["error_count"] == 1)
    live.stop()
    [p] = live.periods()
    assert p.fallback
    assert p.note == (
        f"uk: timeout (0.1 s) after 1 try; offline annual factor for GB (Ember {GB_YEAR}) used"
    )


def test_unreachable_server_falls_back(gb):
    live = LiveIntensity("uk", None, gb, base_url="http://127.0.0.1:9", retries=0)
    run_until_fetched(live)
    assert live.status()["last_error"] == "connection failed (ConnectionError) after 1 try"


def test_periods_before_any_answer_are_fallback(gb):
    live = LiveIntensity("uk", None, gb, clock=lambda: 1000.0)
    [p] = live.periods()
    assert (p.start_wall, p.fallback, p.gco2_per_kwh) == (1000.0, True, GB_G)
    assert "no value fetched yet" in p.note


def test_new_value_starts_a_new_period_on_a_fake_clock(httpserver, gb):
    clock = {"now": 1000.0}

    def answer(request):
        value = 100 if clock["now"] < 4600 else 300
        payload = {"data": [{"from": "x", "to": "y", "intensity": {"forecast": value,
                                                                     "actual": value}}]}
        return Response(json.dumps(payload), content_type="application/json")

    httpserver.expect_request("/intensity").respond_with_handler(answer)
    updates = []
    # a steady wall clock: the run clock (monotonic run seconds) moves with it
    live = uk(httpserver, gb, refresh_s=0.02, clock=lambda: clock["now"],
              run_clock=lambda: clock["now"] - 1000.0, on_update=updates.append)
    live.start()
    wait_for(lambda: live.status()["ok_count"] >= 1)
    clock["now"] = 4600.0
    wait_for(lambda: len(live.periods()) == 2)
    clock["now"] = 8200.0
    live.stop()
    periods = live.periods()
    assert [(p.start_wall, p.end_wall, p.gco2_per_kwh) for p in periods] == [
        (1000.0, 4600.0, 100.0), (4600.0, 8200.0, 300.0),
    ]
    assert [p.gco2_per_kwh for p in updates] == [100.0, 300.0]

    def kw_2_then_1(wall):
        t = wall - 1000.0
        return 2000.0 * t if t <= 3600 else 7.2e6 + 1000.0 * (t - 3600)

    result = account_emissions(kw_2_then_1, 1000.0, 8200.0, gb, periods)
    assert result.emissions_g == pytest.approx(2 * 100 + 1 * 300)
    assert [(p.start_t, p.end_t) for p in periods] == [(0.0, 3600.0), (3600.0, 7200.0)]


STEP_S = 300.0          # a value every 5 minutes of run time
VALUES = [100.0, 140.0, 180.0, 220.0, 260.0, 300.0, 340.0, 380.0, 420.0, 460.0, 500.0, 540.0]


def wall_step_s(k: int, stepped: bool) -> float:
    """How far the wall clock is off when value k arrives: -1 h, then +3 h, then right again."""
    if not stepped:
        return 0.0
    return {3: -3600.0, 4: -3600.0, 5: -3600.0, 6: 10800.0, 7: 10800.0, 8: 10800.0}.get(k, 0.0)


def run_with_wall_clock(httpserver, fallback, stepped: bool):
    """12 values, one every 5 min of run time, while the injected wall clock may jump.
    Returns (emissions of 1 h at 1 kW, the periods, what on_update logged)."""
    start_wall = 1_700_000_000.0
    now = {"t": 0.0, "wall": start_wall}

    def answer(request):
        k = len(httpserver.log)   # this request's index (the log grows after the answer)
        if k < len(VALUES):       # the server's clock: value k arrives at t = k * 5 min
            now["t"] = k * STEP_S
            now["wall"] = start_wall + now["t"] + wall_step_s(k, stepped)
        value = VALUES[min(k, len(VALUES) - 1)]
        payload = {"data": [{"from": f"slot {k}", "to": "-",
                             "intensity": {"forecast": value, "actual": value}}]}
        return Response(json.dumps(payload), content_type="application/json")

    httpserver.expect_request("/intensity").respond_with_handler(answer)
    logged = []
    live = uk(httpserver, fallback, refresh_s=0.005, clock=lambda: now["wall"],
              run_clock=lambda: now["t"], on_update=lambda p: logged.append(p.to_dict()))
    live.start(start_wall=start_wall)
    wait_for(lambda: live.status()["ok_count"] >= len(VALUES) + 1)
    now["t"], now["wall"] = 3600.0, start_wall + 3600.0
    live.stop()
    periods = live.periods()

    def one_kw(wall):
        return 1000.0 * (wall - start_wall)

    result = account_emissions(one_kw, start_wall, start_wall + 3600.0, fallback, periods)
    return result, periods, logged, start_wall


def test_a_wall_clock_step_does_not_move_live_periods(httpserver, gb):
    steady, steady_periods, _, _ = run_with_wall_clock(httpserver, gb, stepped=False)
    httpserver.clear()
    stepped, periods, logged, start_wall = run_with_wall_clock(httpserver, gb, stepped=True)
    # each value covers its 5 minutes: 1 kW * 300 s = 1/12 kWh at that value
    exact = sum(VALUES) / 12
    assert steady.emissions_g == pytest.approx(exact, rel=1e-9)
    assert stepped.emissions_g == pytest.approx(steady.emissions_g, rel=0.01)
    assert stepped.emissions_g == pytest.approx(exact, rel=1e-9)
    assert [p.gco2_per_kwh for p in periods] == VALUES
    assert [p.start_t for p in periods] == [k * STEP_S for k in range(12)]
    assert [p.start_wall for p in periods] == [start_wall + k * STEP_S for k in range(12)]
    # the wall clock read at arrival is kept, as a label only
    assert [p.received_wall - p.start_wall for p in periods] == [
        wall_step_s(k, True) for k in range(12)]
    assert [(p.start_t, p.end_t) for p in periods] == [
        (q.start_t, q.end_t) for q in steady_periods]
    # what the run log holds (each period as it starts, open) accounts the same when rebuilt
    rebuilt = [IntensityPeriod.from_dict(json.loads(json.dumps(d))) for d in logged]
    assert all(p.end_wall is None for p in rebuilt)
    again = account_emissions(lambda w: 1000.0 * (w - start_wall), start_wall,
                              start_wall + 3600.0, gb, rebuilt)
    assert again.emissions_g == pytest.approx(stepped.emissions_g, rel=1e-9)


def test_a_tracked_run_rebuilt_from_its_log_accounts_live_periods_the_same(
        httpserver, fake_h100, tmp_path):
    from tracker import track
    from tracker.rebuild import rebuild_summary

    def answer(request):
        value = 100 if len(httpserver.log) == 0 else 300
        payload = {"data": [{"from": "x", "to": "y",
                             "intensity": {"forecast": value, "actual": value}}]}
        return Response(json.dumps(payload), content_type="application/json")

    httpserver.expect_request("/intensity").respond_with_handler(answer)
    with track("rebuilt", region="GB", live_intensity="uk",
               intensity_base_url=httpserver.url_for(""), intensity_refresh_s=0.3,
               output_dir=tmp_path, cpu=False, ram=False, rate_hz=50) as run:
        wait_for(lambda: len(run._live.periods()) == 2 and run._live.periods()[0].end_t > 0)
        time.sleep(0.3)
    live = run.summary
    records = [json.loads(line) for line in (run.run_dir / "samples.jsonl").read_text()
               .splitlines() if '"intensity"' in line]
    assert [r["intensity"]["gco2_per_kwh"] for r in records] == [100.0, 300.0]
    assert all(r["intensity"]["start_t"] is not None for r in records)
    rebuilt = rebuild_summary(run.run_dir)
    assert live.gco2_per_kwh not in (100.0, 300.0)   # both values count
    assert rebuilt.emissions_kg == pytest.approx(live.emissions_kg, rel=1e-6)


def test_old_logs_with_wall_times_only_still_account(gb):
    """Records written before start_t existed: their wall times are used as they are."""
    old = [{"start_wall": 1000.0, "end_wall": None, "gco2_per_kwh": 100.0, "provider": "uk",
            "zone": "GB", "fallback": False, "note": ""},
           {"start_wall": 4600.0, "end_wall": None, "gco2_per_kwh": 300.0, "provider": "uk",
            "zone": "GB", "fallback": False, "note": ""}]
    periods = [IntensityPeriod.from_dict(d) for d in old]
    assert periods[0].start_t is None and periods[0].received_wall is None
    result = account_emissions(lambda w: 1000.0 * (w - 1000.0), 1000.0, 8200.0, gb, periods)
    assert result.emissions_g == pytest.approx(1 * 100 + 1 * 300)


def test_electricitymaps_sends_token_header_and_zone(httpserver, gb):
    httpserver.expect_request(
        "/carbon-intensity/latest", query_string={"zone": "DE"}, headers={"auth-token": TOKEN}
    ).respond_with_json(EMAPS_LATEST)
    live = run_until_fetched(make_live_intensity(
        "electricitymaps:de", gb, token=TOKEN, base_url=httpserver.url_for("")
    ))
    [p] = live.periods()
    assert (p.gco2_per_kwh, p.zone, p.fallback) == (302.0, "DE", False)
    assert p.provider == "electricitymaps"


def test_electricitymaps_401_is_not_retried(httpserver, gb):
    httpserver.expect_request("/carbon-intensity/latest").respond_with_json(
        {"status": "error", "message": "Invalid auth-token"}, status=401
    )
    live = run_until_fetched(LiveIntensity(
        "electricitymaps", "DE", gb, token=TOKEN, base_url=httpserver.url_for(""), retries=2
    ))
    assert len(httpserver.log) == 1
    [p] = live.periods()
    assert p.fallback
    assert p.note.startswith(
        "electricitymaps:DE: HTTP 401 (not authorised; check the token (ELECTRICITYMAPS_TOKEN))"
    )


def test_electricitymaps_token_from_env(httpserver, gb, monkeypatch):
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", TOKEN)
    monkeypatch.setenv("ENERGY_TRACKER_ELECTRICITYMAPS_URL", httpserver.url_for("/v3"))
    httpserver.expect_request(
        "/v3/carbon-intensity/latest", headers={"auth-token": TOKEN}
    ).respond_with_json(EMAPS_LATEST)
    live = run_until_fetched(make_live_intensity("electricitymaps:DE", gb))
    assert live.periods()[0].gco2_per_kwh == 302.0


def test_electricitymaps_without_token_is_a_config_error(gb, monkeypatch):
    monkeypatch.delenv("ELECTRICITYMAPS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="ELECTRICITYMAPS_TOKEN"):
        LiveIntensity("electricitymaps", "DE", gb)


def test_energidataservice(httpserver, gb):
    httpserver.expect_request(
        "/dataset/CO2Emis",
        query_string={"filter": '{"PriceArea": ["DK1"]}', "sort": "Minutes5UTC DESC", "limit": "1"},
    ).respond_with_json(EDS_CO2EMIS)
    live = run_until_fetched(make_live_intensity(
        "energidataservice:dk1", resolve_factor("DK1"), base_url=httpserver.url_for("")
    ))
    [p] = live.periods()
    assert (p.gco2_per_kwh, p.zone, p.fallback) == (87.0, "DK1", False)
    assert live.status()["last_observed"] == "2024-05-01T11:55:00"


def test_energidataservice_no_records_falls_back(httpserver):
    empty = dict(EDS_CO2EMIS, records=[])
    httpserver.expect_request("/dataset/CO2Emis").respond_with_json(empty)
    live = run_until_fetched(LiveIntensity(
        "energidataservice", "DK2", resolve_factor("DK2"), base_url=httpserver.url_for("")
    ))
    [p] = live.periods()
    assert p.fallback and p.gco2_per_kwh == 144
    assert "offline annual factor for DK-DK2 (Electricity Maps 2025) used" in p.note


def test_cache_is_used_when_fresh_and_after_errors(httpserver, gb, tmp_path):
    httpserver.expect_request("/intensity").respond_with_json(UK_NATIONAL)
    run_until_fetched(uk(httpserver, gb, cache_dir=tmp_path, clock=lambda: 1000.0))
    [cache_file] = tmp_path.iterdir()
    assert json.loads(cache_file.read_text())["response"] == UK_NATIONAL

    # fresh (younger than refresh_s): no request at all
    httpserver.clear()
    live = uk(httpserver, gb, cache_dir=tmp_path, clock=lambda: 1100.0).start()
    wait_for(lambda: live.status()["cache"] == "hit")
    live.stop()
    assert len(httpserver.log) == 0 and live.periods()[0].gco2_per_kwh == 127.0

    # older than refresh_s but within max_age_s: fetched, failed, cached value used
    httpserver.expect_request("/intensity").respond_with_data("down", status=503)
    live = run_until_fetched(uk(httpserver, gb, cache_dir=tmp_path, retries=0,
                                clock=lambda: 2000.0))
    [p] = live.periods()
    assert (p.gco2_per_kwh, p.fallback) == (127.0, False)
    assert "cached value from 2024-05-01T12:00Z" in p.note
    assert live.status()["cache"] == "used after error"

    # too old: the annual factor
    live = run_until_fetched(uk(httpserver, gb, cache_dir=tmp_path, retries=0,
                                clock=lambda: 1000.0 + 7200))
    assert live.periods()[0].fallback


def test_token_never_leaks(httpserver, gb, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_oneshot_request("/carbon-intensity/latest").respond_with_data(
        "no", status=401
    )
    httpserver.expect_request("/carbon-intensity/latest").respond_with_json(EMAPS_LATEST)
    seen = []
    for _ in range(2):  # one 401, one success written to the cache
        live = LiveIntensity("electricitymaps", "DE", gb, token=TOKEN, retries=0,
                             base_url=httpserver.url_for(""), cache_dir=tmp_path)
        run_until_fetched(live)
        seen += [repr(live), str(live.status()), json.dumps([p.to_dict() for p in live.periods()])]
    assert len(list(tmp_path.iterdir())) == 1
    out = tmp_path / "run-output.json"
    out.write_text(json.dumps(seen))
    for path in tmp_path.iterdir():
        assert TOKEN not in path.read_text(), path
    assert TOKEN not in caplog.text
    assert "token=***" in repr(live)
    with pytest.raises(ConfigError) as info:
        LiveIntensity("electricitymaps", None, gb, token=TOKEN)
    assert TOKEN not in str(info.value)


def test_stop_is_quick_and_idempotent(httpserver, gb):
    httpserver.expect_request("/intensity").respond_with_json(UK_NATIONAL)
    live = uk(httpserver, gb, refresh_s=900).start()
    wait_for(lambda: live.status()["ok_count"] == 1)
    t0 = time.monotonic()
    live.stop()
    live.stop()
    assert time.monotonic() - t0 < 0.5
    assert not live.status()["running"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("solar-api", "Known: electricitymaps, energidataservice, uk"),
        ("uk:99", "regional id 1-17"),
        ("energidataservice:DK3", "DK1 or DK2"),
        ("energidataservice", "DK1 or DK2"),
        ("", "must look like"),
    ],
)
def test_bad_specs(spec, message, gb):
    with pytest.raises(ConfigError, match=message):
        make_live_intensity(spec, gb)


def test_bad_settings(gb):
    with pytest.raises(ConfigError, match="timeout_s"):
        LiveIntensity("uk", None, gb, timeout_s=30)
    with pytest.raises(ConfigError, match="retries"):
        LiveIntensity("uk", None, gb, retries=-1)
    assert make_live_intensity(None, gb) is None


def test_intensity_period_round_trip():
    p = IntensityPeriod(1.5, None, 120.0, "uk", "GB", True, "why")
    assert IntensityPeriod.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    q = IntensityPeriod(1.5, 9.5, 120.0, "uk", "GB", False, "", start_t=0.5, end_t=8.5,
                        received_wall=3601.5)
    assert IntensityPeriod.from_dict(json.loads(json.dumps(q.to_dict()))) == q
