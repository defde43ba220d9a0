"""energy-tracker: live, crash-safe energy (J, kWh) and CO2e measurement of training runs.

    from tracker import track
    with track("bert-finetune", region="DE") as run:
        train()
    print(run.summary)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import Tracker, track
from .errors import (
    ConfigError,
    SensorFailed,
    SensorUnavailable,
    TrackerError,
    UnknownRegionError,
)
from .summary import Summary

__all__ = [
    "ConfigError",
    "SensorFailed",
    "SensorUnavailable",
    "Summary",
    "Tracker",
    "TrackerError",
    "UnknownRegionError",
    "__version__",
    "track",
]
