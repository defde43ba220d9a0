"""energy-tracker: live, crash-safe energy (J, kWh) and CO2e measurement of training runs.

    from tracker import track
    with track("bert-finetune", region="DE") as run:
        train()
    print(run.summary)
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    SensorFailed,
    SensorUnavailable,
    TrackerError,
    UnknownRegionError,
)

if TYPE_CHECKING:
    from .api import Tracker, track
    from .summary import Summary

# `import tracker` stays cheap (the errors above only): the API is imported on first use, and
# NVML, psutil, the carbon tables and HTTP only when a run needs them.
_LAZY = {"Tracker": ".api", "track": ".api", "Summary": ".summary"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
