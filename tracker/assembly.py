"""The parts a tracker is built from, resolved from its validated configuration when it is
constructed: the grid factor (region="auto" detected), the live carbon-intensity provider, the
log_to exporters, the sensors. Each is checked now, so a bad option is a ConfigError at
`track()` and not at start(); threads start with the run. And the sensors' release at stop,
and the typed signature the declared options give `Tracker(...)` and `track()`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from .config import TrackerConfig
    from .sensors.base import Sensor

log = logging.getLogger("tracker")


@dataclass
class Parts:
    region: Optional[str]          # as used (region="auto": the one detected)
    region_note: Optional[str]     # how it was detected
    factor: Any                    # carbon.factor.GridFactor
    live: Any                      # the live provider, or None
    hub: Any                       # exporters.ExportHub, or None without log_to
    sensors: Optional[list[Sensor]]   # None: found by start() (see assemble)
    discovery_notes: list[str]


def assemble(config: TrackerConfig) -> Parts:
    """The parts of a tracker for `config` (see the module's docstring)."""
    from .carbon import make_live_intensity, resolve_factor
    from .exporters import make_hub

    region, note = config.region, None
    if region is not None and region.strip().lower() == "auto":
        from .carbon.autodetect import detect_region
        region, how = detect_region()
        note = f"region auto-detected as {region} from {how}"
    factor = resolve_factor(region, gco2_per_kwh=config.gco2_per_kwh, mix=config.mix,
                            grid_year=config.grid_year)
    assert config.output_dir is not None   # from_options always sets it
    # Last good live values are cached under the output root (never the token). The
    # provider is validated now; its thread starts with the run.
    live = make_live_intensity(config.live_intensity, factor, **config.live_options(),
                               cache_dir=config.output_dir / ".intensity-cache")
    # log_to was checked by the configuration; the tools' libraries are imported on use
    hub = make_hub(config.log_to, config.log_every_steps, config.log_min_interval_s)
    # Devices are opened by start() (NVML, amdsmi, plugin entry points: tens of ms that
    # construction need not pay); an explicit gpus= names hardware, so it is checked now and
    # an unknown GPU is a ConfigError here. None: discovery waits for start().
    sensors: Optional[list[Sensor]] = None
    notes: list[str] = []
    if config.gpus is not None or config.sensors is not None:
        sensors, notes = discover_sensors(config)
    return Parts(region, note, factor, live, hub, sensors, notes)


def discover_sensors(config: TrackerConfig) -> tuple[list[Sensor], list[str]]:
    """The sensors given (sensors=), else every registered sensor kind's devices
    (tracker/sensors/registry.py), and the notes discovery has for the user."""
    if config.sensors is not None:
        return list(config.sensors), []
    from .sensors import registry
    found = registry.discover(registry.Options(
        gpus=list(config.gpus) if config.gpus is not None else None, cpu=config.cpu,
        ram=config.ram, node=config.node, cpu_tdp_w=config.cpu_tdp_w,
        cpu_scope=config.cpu_scope,
        powercap_root=config.powercap_root, hwmon_root=config.hwmon_root,
        counter_interval_s=config.counter_interval_s))
    return list(found.sensors), list(found.notes)


def sensor_stop_hooks(devices: Sequence[Any], notes: list[str]) -> list[Callable[[float], None]]:
    """Stop hooks that add each sensor's word at stop (`sensor.scope_note()`, e.g. the CPU
    model's share of CPU time that was not the run's) to the run's notes."""
    hooks: list[Callable[[float], None]] = []
    for d in devices:
        note = getattr(d.sensor, "scope_note", None)
        if callable(note):
            def hook(_t_end: float, note: Callable[[], Optional[str]] = note) -> None:
                text = note()
                if text:
                    notes.append(text)
            hooks.append(hook)
    return hooks


def close_sensors(devices: Sequence[Any]) -> None:
    """Release sensor handles (files, NVML) once the final reading is taken."""
    for d in devices:
        try:
            d.sensor.close()
        except Exception as e:
            log.debug("energy-tracker: closing %s: %s", d.sensor.name, e)


def declare_options(tracker_class: Any, track: Any) -> None:
    """`Tracker(...)` and `track()` take `**options`, checked by TrackerConfig; the typed
    signature and the docstring that inspect, IDEs and jsonargparse read are derived from the
    one declaration of the options (config.TrackerConfig)."""
    from .config import options_docstring, signature_with_options

    init: Any = tracker_class.__init__
    init.__signature__ = signature_with_options(tracker_class.__init__)
    track.__signature__ = signature_with_options(track)
    tracker_class.__doc__ = ((tracker_class.__doc__ or "").rstrip() + "\n" + options_docstring()
                             + "\n    ")


__all__ = ["Parts", "assemble", "close_sensors", "declare_options", "discover_sensors"]
