"""How far a measured energy can be from the truth, from what was read (a bound, in J).

Every window, device and run total carries `uncertainty_j`: a ± bound on its measured part
(counter and sampled devices; a model has no bound, and says so). It adds up, per device:

- **edges.** NVML publishes the counter and both power readings every ~100 ms
  (`PUBLISH_S`), and a reading sometimes misses an update, so a reading taken at a window edge
  describes the energy up to `STALE_MAX_S` = 0.2 s earlier: an edge is known to
  ±P_edge × 0.2 s, P_edge being the power just before or around it (the larger). An edge
  without a counter read of its own (a step, or any edge of a sampled device) lies between
  readings one sampling interval apart: ±P_edge × (interval + 0.2 s).
- **the interior, for sampled devices.** Integrated power is off by a share of the energy
  that depends on the load; the shares below are the largest seen on the generated bursty
  traces and the real H100 trace (README *Accuracy and overhead*): 1 % when instant and 1 s
  average power are fused, 3.5 % with the instant power alone. A counter's interior is exact.

So a 0.1 % figure for an hour-long epoch and a ±50 % figure for a 5 ms step come from the same
rule, and people can tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

PUBLISH_S = 0.1                 # NVML's update period of counter and power readings
# How late a reading can be: two publication periods, as a reading sometimes misses an update
# (on a recorded H100 the counter's gaps were 0.099 s median, 0.153 s at the 99th
# percentile, 0.217 s at most).
STALE_MAX_S = 0.2
SAMPLED_FUSED_SHARE = 0.01
SAMPLED_INSTANT_SHARE = 0.05
NOTE = ("± bound from what was read: readings up to 0.2 s late at each edge (+ the "
        "sampling interval at edges without their own counter read), plus 1 % (fused) / "
        "5 % (instant power) of a sampled device's energy; modeled devices have no bound")


def interior_share(dev: Any) -> float:
    """The share of a device's energy its method can be off by, edges aside."""
    if dev.sensor.method != "sampled":
        return 0.0
    return SAMPLED_FUSED_SHARE if getattr(dev, "fusion", None) is not None \
        else SAMPLED_INSTANT_SHARE


def power_near(curve: Any, t: float, half_s: float) -> float:
    """Mean power (W) of a curve over [t - half_s, t + half_s], clipped to where it has data."""
    if curve.empty:
        return 0.0
    a, b = max(curve.start, t - half_s), min(curve.end, t + half_s)
    if b <= a:
        return 0.0
    mean_w: float = curve.energy_between(a, b) / (b - a)
    return max(0.0, mean_w)


def edge_s(dev: Any, anchored: bool, interval_s: float) -> float:
    """How far in time an edge's energy can be off for this device."""
    if dev.sensor.method == "counter" and anchored:
        return STALE_MAX_S
    return STALE_MAX_S + interval_s


def device_window_j(dev: Any, t0: float, t1: float, *, anchored: bool,
                    interval_s: float) -> Optional[float]:
    """± bound (J) on one device's energy in [t0, t1]; None for a modeled device."""
    if dev.sensor.method not in ("counter", "sampled") or dev.curve.empty:
        return None
    dt = edge_s(dev, anchored, interval_s)
    # the power just before an edge is what a late reading misses; around it, what an
    # interpolated edge can misplace: take the larger
    a, b = (max(power_near(dev.curve, t - dt / 2, dt / 2), power_near(dev.curve, t, dt)) * dt
            for t in (t0, t1))
    # Two counter reads are both late by 0-100 ms, so their difference is off by at most the
    # larger edge term, one way or the other; interpolated edges can each be off either way.
    edges = max(a, b) if dev.sensor.method == "counter" and anchored else a + b
    energy_j: float = dev.curve.energy_between(t0, t1)
    return edges + interior_share(dev) * abs(energy_j)


def window_j(devices: Sequence[Any], t0: float, t1: float, *, anchored: bool,
             interval_s: float) -> Optional[float]:
    """± bound on the measured devices' energy in [t0, t1]; None when none is measured."""
    parts = [device_window_j(d, t0, t1, anchored=anchored, interval_s=interval_s)
             for d in devices]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


__all__ = [
    "NOTE",
    "PUBLISH_S",
    "SAMPLED_FUSED_SHARE",
    "SAMPLED_INSTANT_SHARE",
    "STALE_MAX_S",
    "device_window_j",
    "interior_share",
    "power_near",
    "window_j",
]
