"""The project's small exception set: configuration errors at construction, sensor errors
at the edge."""

from __future__ import annotations


class TrackerError(Exception):
    """Base class of every error this library raises."""


class ConfigError(TrackerError, ValueError):
    """Bad input given to the tracker; raised at construction with a message saying what to do."""


class UnknownRegionError(ConfigError):
    """A grid region code or name that is not in the bundled tables."""

    def __init__(self, region: str, suggestions: list[str]):
        self.region = region
        self.suggestions = list(suggestions)
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(
            f"Unknown grid region {region!r}.{hint} "
            "Run `energy-tracker regions QUERY` to search the bundled regions, "
            "or pass gco2_per_kwh= to give the factor yourself."
        )


class SensorUnavailable(TrackerError):
    """A sensor cannot be used on this machine (no driver, no device, no permission)."""


class SensorFailed(TrackerError):
    """A sensor that was working raised while being read (device lost, driver error)."""
