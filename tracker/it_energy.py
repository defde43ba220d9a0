"""IT energy of a run's devices: E_IT(t), the sum of their energy curves, and the frontier up
to which it is final. One definition for the live run, its rebuild, the ledger and the
summary (a device included in a whole-node meter is a part of that meter's energy, never
added again)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union, overload

if TYPE_CHECKING:
    from .sampler import DeviceState

# A counter GPU whose counter has not been read for this long (reads failing) no longer holds
# the frontier back: its curve since the last anchor is taken as final.
STALE_ANCHOR_S = 30.0


def frontier(devices: Sequence[DeviceState]) -> float:
    """Run time up to which every device's energy curve is final (see rundir/ledger.py)."""
    ends = [math.inf if d.lost_at is not None else d.curve.final_until(STALE_ANCHOR_S)
            for d in devices]
    return min(ends) if ends else math.inf


@overload
def it_energy_at(devices: Sequence[DeviceState], ts: float) -> float: ...
@overload
def it_energy_at(devices: Sequence[DeviceState], ts: Any) -> Any: ...


def it_energy_at(devices: Sequence[DeviceState], ts: Union[float, Any]) -> Any:
    """E_IT in J at run time(s) `ts`: a float for a float; a numpy array for a numpy array
    (np.interp per device); else a list (ascending times walk each curve once)."""
    from .sensors.base import counted
    curves = [d.curve for d in list(devices)
              if not d.curve.empty and counted(d.sensor.info.details)]
    if isinstance(ts, (int, float)):
        return sum(c.energy_at(float(ts)) for c in curves)
    if hasattr(ts, "dtype"):
        import numpy as np
        total = np.zeros(len(ts))
        for c in curves:
            total += c.energy_at_np(ts)
        return total
    if not isinstance(ts, list) and hasattr(ts, "__len__") and _numpy_ok():
        import numpy as np
        return it_energy_at(devices, np.asarray(ts, dtype=float))
    out = [0.0] * len(ts)
    for c in curves:
        for i, e in enumerate(c.energy_at_sorted(ts)):
            out[i] += e
    return out


def _numpy_ok() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True
