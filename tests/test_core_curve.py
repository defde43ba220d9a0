"""EnergyCurve: E(t) from power samples and energy-counter anchors, with exact synthetic inputs."""

from __future__ import annotations

import pytest

from tracker.curve import CounterWentBackwards, EnergyCurve


def ramp_curve() -> EnergyCurve:
    """P(t) = 100 + 50 t W sampled every 0.5 s from 0 to 4 s: E(t) = 100 t + 25 t^2."""
    curve = EnergyCurve()
    for k in range(9):
        t = k * 0.5
        curve.add_power(t, 100.0 + 50.0 * t)
    return curve


def test_trapezoid_rule_is_exact_on_linear_power():
    curve = ramp_curve()

    for k in range(9):
        t = k * 0.5
        assert curve.energy_at(t) == pytest.approx(100.0 * t + 25.0 * t * t, abs=1e-9)
    assert curve.total_j == pytest.approx(800.0, abs=1e-9)
    assert curve.power_samples == 9
    assert curve.peak_w == 300.0
    assert (curve.start, curve.end) == (0.0, 4.0)


def test_energy_between_is_interpolated_and_clamped_to_the_data():
    curve = ramp_curve()

    assert curve.energy_between(1.0, 3.0) == pytest.approx(525.0 - 125.0, abs=1e-9)
    # linear between samples: half way from E(1)=125 to E(1.5)=206.25
    assert curve.energy_at(1.25) == pytest.approx(165.625, abs=1e-9)
    assert curve.energy_at(-5.0) == 0.0
    assert curve.energy_at(99.0) == pytest.approx(800.0, abs=1e-9)
    assert curve.energy_between(0.0, 99.0) == curve.total_j


def test_empty_curve_has_zero_energy_and_no_extent():
    curve = EnergyCurve()

    assert curve.empty
    assert curve.energy_at(1.0) == 0.0
    assert curve.total_j == 0.0
    assert curve.start is None and curve.end is None


def test_counter_anchors_rescale_the_power_shape_exactly():
    # The power reads say 100 W then 300 W (shape: 100 + 200 + 300 = 600 J over 3 s), but the
    # counter says 1200 J: every point is scaled by 2 and E passes through the counter delta.
    curve = EnergyCurve()
    for t, w, c in [(0.0, 100.0, 5000.0), (1.0, 100.0, None), (2.0, 300.0, None),
                    (3.0, 300.0, 6200.0)]:
        curve.add_power(t, w)
        if c is not None:
            curve.add_counter(t, c)

    t, e = curve.points()
    assert t == [0.0, 1.0, 2.0, 3.0]
    assert e == pytest.approx([0.0, 200.0, 600.0, 1200.0], abs=1e-9)
    assert curve.counter_reads == 2


def test_each_anchor_interval_is_scaled_on_its_own():
    curve = EnergyCurve()
    readings = [(0.0, 100.0, 1000.0), (0.5, 100.0, None), (1.0, 100.0, 1150.0),
                (1.5, 100.0, None), (2.0, 100.0, 1200.0)]
    for t, w, c in readings:
        curve.add_power(t, w)
        if c is not None:
            curve.add_counter(t, c)

    # [0, 1]: shape 100 J, counter 150 J (x1.5); [1, 2]: shape 100 J, counter 50 J (x0.5)
    assert curve.energy_at(0.5) == pytest.approx(75.0, abs=1e-9)
    assert curve.energy_at(1.0) == pytest.approx(150.0, abs=1e-9)
    assert curve.energy_at(1.5) == pytest.approx(175.0, abs=1e-9)
    assert curve.total_j == pytest.approx(200.0, abs=1e-9)


def test_counter_only_curve_is_linear_between_reads():
    curve = EnergyCurve()
    curve.add_counter(0.0, 10.0)
    curve.add_counter(2.0, 210.0)
    curve.add_counter(3.0, 260.0)

    assert curve.energy_at(1.0) == pytest.approx(100.0, abs=1e-9)
    assert curve.energy_at(2.5) == pytest.approx(225.0, abs=1e-9)
    assert curve.total_j == pytest.approx(250.0, abs=1e-9)
    assert curve.peak_w == pytest.approx(100.0)  # the highest counter-derived mean power
    assert curve.power_samples == 0


def test_unchanged_counter_is_skipped_unless_final():
    curve = EnergyCurve()
    curve.add_power(0.0, 100.0)
    curve.add_counter(0.0, 50.0)
    curve.add_power(0.5, 100.0)
    curve.add_counter(0.5, 50.0)    # stale: the counter had not ticked yet
    curve.add_power(1.0, 100.0)
    curve.add_counter(1.0, 150.0)

    # Had the stale read anchored, E(0.5) would be 0 and all 100 J would sit in [0.5, 1].
    assert curve.energy_at(0.5) == pytest.approx(50.0, abs=1e-9)
    assert curve.energy_at(1.0) == pytest.approx(100.0, abs=1e-9)

    curve.add_power(1.5, 100.0)
    curve.add_counter(1.5, 150.0, final=True)   # at stop an unchanged counter is the truth

    assert curve.total_j == pytest.approx(100.0, abs=1e-9)
    assert curve.counter_reads == 4


def test_counter_going_backwards_keeps_energy_and_rebases():
    curve = EnergyCurve()
    curve.add_power(0.0, 100.0)
    curve.add_counter(0.0, 1000.0)
    curve.add_power(1.0, 100.0)
    curve.add_counter(1.0, 1100.0)
    curve.add_power(2.0, 100.0)

    with pytest.raises(CounterWentBackwards, match=r"1100\.0 J to 5\.0 J"):
        curve.add_counter(2.0, 5.0)          # GPU reset: the counter restarts near zero

    assert curve.total_j == pytest.approx(200.0, abs=1e-9)   # nothing measured is lost
    curve.add_power(3.0, 100.0)
    curve.add_counter(3.0, 155.0)            # 150 J from the new origin, shape said 100 J
    assert curve.energy_at(2.0) == pytest.approx(200.0, abs=1e-9)
    assert curve.total_j == pytest.approx(350.0, abs=1e-9)


def test_window_energies_and_gaps_add_up_to_the_total_exactly():
    curve = EnergyCurve()
    counter = 7_000.0
    for k in range(41):
        t = k * 0.1
        w = 250.0 + 120.0 * ((k * 7) % 5) - 40.0 * (k % 3)
        curve.add_power(t, w)
        if k % 10 == 0:
            counter += 95.0 + k
            curve.add_counter(t, counter)
    edges = [0.0, 0.37, 1.0, 1.05, 2.5, 3.33, 4.0]   # windows and the gaps between them

    parts = [curve.energy_between(a, b) for a, b in zip(edges, edges[1:])]

    assert sum(parts) == pytest.approx(curve.total_j, rel=1e-12)
    assert curve.total_j == pytest.approx(counter - (7_000.0 + 95.0), rel=1e-12)
    assert all(p > 0 for p in parts)
