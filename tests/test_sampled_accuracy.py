"""Accuracy on bursty loads, from generated traces (tests/bursty.py, seeds fixed), replayed
through the real sensor, sampler and curve; and each epoch's ± bound holding the truth.

The full distributions (600 replays per mode) are printed by scripts/bench_sampled_accuracy.py
and quoted in the README; this runs a slice of them with the same code.
"""

from __future__ import annotations

import statistics

import pytest
from bursty import PATTERNS, generate

from tracker.fusion import PowerFusion
from tracker.replay import Trace, replay

OFFSETS = [k * 0.0125 for k in range(8)]


@pytest.fixture(scope="module")
def replays(tmp_path_factory):
    """{mode: [(pattern, total error vs true %, [(epoch error vs true %, vs counter %,
    |error| J, bound J)])]} over 5 patterns x 8 tick phases."""
    tmp = tmp_path_factory.mktemp("bursty")
    out: dict[str, list] = {}
    for pattern in PATTERNS:
        syn = generate(pattern, seed=0)
        path = syn.write(tmp / f"{pattern.name}.json")
        trace = Trace(path)
        for mode in ("counter", "sampled", "sampled-instant"):
            for off in OFFSETS:
                r = replay(path, mode=mode, offset_s=off)
                start = trace.t[0] + off
                true = syn.true_energy_j(start, start + r.duration_s)
                epochs = []
                for e in r.epochs:
                    a, b = start + e["start_s"], start + e["end_s"]
                    t = syn.true_energy_j(a, b)
                    epochs.append(((e["energy_j"] - t) / t * 100, e["error_pct"],
                                   abs(e["energy_j"] - t), e["uncertainty_j"]))
                out.setdefault(mode, []).append(
                    (pattern.name, (r.energy_j - true) / true * 100, epochs))
    return out


def test_fused_sampling_keeps_totals_within_half_a_percent(replays):
    totals = [abs(t) for _, t, _ in replays["sampled"]]
    assert max(totals) <= 0.5, max(totals)
    # the instant field alone aliases on these loads: that is why it is not used alone
    instant = [abs(t) for _, t, _ in replays["sampled-instant"]]
    assert max(instant) > 1.0 and statistics.median(instant) > statistics.median(totals)


def test_fused_sampling_per_epoch(replays):
    """Epochs of 5-9 s with power transitions at both edges, the hardest case for 100 ms
    publication: the worst epoch of a trace is ~1 % off the counter's delta at the median
    (the 1 % goal is met at the median, not at the tail), within 2.5 % at most; the counter
    itself is up to 1.5 % off the true energy there."""
    worst = [max(abs(e[1]) for e in eps) for _, _, eps in replays["sampled"]]
    assert statistics.median(worst) <= 1.25, statistics.median(worst)
    assert max(worst) <= 2.5, max(worst)
    instant = [max(abs(e[1]) for e in eps) for _, _, eps in replays["sampled-instant"]]
    assert statistics.median(instant) > 2 * statistics.median(worst)


def test_counter_mode_windows_are_the_counters_own_delta(replays):
    worst = [max(abs(e[1]) for e in eps) for _, _, eps in replays["counter"]]
    assert max(worst) <= 0.2, max(worst)
    totals = [abs(t) for _, t, _ in replays["counter"]]
    assert max(totals) <= 0.2


@pytest.mark.parametrize("mode", ["counter", "sampled", "sampled-instant"])
def test_every_epochs_bound_holds_its_true_error(replays, mode):
    misses = [(name, err, bound) for name, _, eps in replays[mode]
              for _, _, err, bound in eps if err > bound]
    assert not misses, misses[:5]     # (a 1 % miss rate was seen for the instant power alone
    #                                    on more seeds: the bound covers ~99 % of windows)
    # and the bound is informative: a few % of an epoch, not the whole of it
    shares = [bound / (err + 1e-9) for _, _, eps in replays[mode] for _, _, err, bound in eps]
    assert statistics.median(shares) > 1.0


# -- the filter itself ------------------------------------------------------------------------
def feed(f: PowerFusion, power, t_end: float, rate: float = 10.0):
    pts = []
    k = 0
    while k / rate <= t_end:
        t = k / rate
        pts += f.add(t, power(t), average(power, t))
        k += 1
    return pts + f.flush(t_end)


def average(power, t: float, tau: float = 1.0, n: int = 200) -> float:
    """The mean of `power` over the last tau seconds (what NVML's 1 s average reports)."""
    return sum(power(t - tau + (i + 0.5) * tau / n) for i in range(n)) / n


def integrate(points) -> float:
    return sum(0.5 * (w0 + w1) * (t1 - t0) for (t0, w0), (t1, w1) in zip(points, points[1:]))


def test_constant_power_is_exact():
    pts = feed(PowerFusion(), lambda t: 250.0, 10.0)
    assert pts[0][0] == 0.0 and pts[-1][0] == 10.0
    assert integrate(pts) == pytest.approx(2500.0, rel=1e-9)


def test_a_square_wave_the_instant_reading_aliases_is_corrected():
    """A 99.8 ms period sampled every 100 ms: the instant readings drift through the wave's
    phase over ~50 s, so 40 s of them see mostly one level; the average sees the mean; fused,
    the integral follows the average (its first and last half second excepted)."""
    def square(t: float) -> float:
        return 600.0 if (t % 0.0998) < 0.0499 else 200.0
    fused = integrate(feed(PowerFusion(stale_s=0.0), square, 40.0))
    k = [i / 10 for i in range(401)]
    instant = integrate([(t, square(t)) for t in k])
    true = 400.0 * 40.0
    assert abs(fused - true) / true < 0.01
    assert abs(instant - true) / true > 0.05


def test_state_round_trip_continues_identically():
    def wave(t: float) -> float:
        return 300.0 + 200.0 * ((t * 7) % 1.0)
    a = PowerFusion()
    first = [p for k in range(40) for p in a.add(k / 10, wave(k / 10), average(wave, k / 10))]
    b = PowerFusion.from_state(a.state())
    rest_a = [p for k in range(40, 80) for p in a.add(k / 10, wave(k / 10),
                                                       average(wave, k / 10))]
    rest_b = [p for k in range(40, 80) for p in b.add(k / 10, wave(k / 10),
                                                       average(wave, k / 10))]
    assert first and rest_a == rest_b


# -- a live run without a counter -----------------------------------------------------------------
def test_a_live_run_without_a_counter_fuses_both_readings(fake_nvml, manual_clock, tmp_path):
    """A GPU without the energy counter but with both power fields: the run is `sampled`
    from the fused readings, logs both ("w" and "a"), is exact on a power step, and its
    rebuild from the log gives the live numbers. (On the hand-driven clock: a loaded machine
    would delay reads past the power step and add its own error.)"""
    import json

    from conftest import UUIDS, FakeGPU, Step

    from tracker import track
    from tracker.rebuild import rebuild_summary

    gpu = FakeGPU(uuid=UUIDS[0], has_counter=False, has_average_field=True,
                  profile=Step(150.0, 450.0, at_s=6.0), clock=manual_clock,
                  born=manual_clock() - 5.0)   # on for 5 s: a full 1 s average at t=0
    fake_nvml(gpu)
    with track("fused", output_dir=tmp_path, cpu=False, ram=False, rate_hz=20) as run:
        w = run.begin_window("phase", kind="phase")
        manual_clock.sleep(2.5)
        run.end_window(w)
    s = run.summary
    (dev,) = s.devices
    assert dev.method == "sampled" and "power_fusion" in dev.details
    start = json.loads((run.run_dir / "run.json").read_text())["start_monotonic"]
    true = gpu.true_energy_j(start, start + s.duration_s)
    # (this fake answers with no publication delay; the fusion dates readings back 50 ms,
    # NVML's mean delay, which moves the step at 1 s earlier by that much: +15 J here)
    assert s.energy_j == pytest.approx(true, rel=0.03)
    assert s.energy_uncertainty_j is not None and abs(s.energy_j - true) <= s.energy_uncertainty_j
    lines = [json.loads(x) for x in (run.run_dir / "samples.jsonl").read_text().splitlines()]
    assert any("a" in (r.get("d") or {}).get("gpu0", {}) for r in lines)
    rebuilt = rebuild_summary(run.run_dir, status="finished")
    assert rebuilt.energy_j == pytest.approx(s.energy_j, rel=1e-9)
    assert rebuilt.windows[0].energy_j == pytest.approx(s.windows[0].energy_j, rel=1e-9)
