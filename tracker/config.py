"""The tracker's options as one validated, immutable configuration.

`TrackerConfig.from_options(name, **options)` is the only place options are checked: types,
bounds, combinations, close matches for a misspelt option. It opens no device, starts no
thread, writes nothing and calls no network; it reads only the bundled grid tables (to check a
region) and stats the output directory (so an unwritable one fails now, not after an hour of
training). `Tracker`, the framework callbacks and the CLI all validate through it; the things
that touch the machine (finding sensors, detecting region="auto", opening the run directory)
happen in the Tracker from the validated values.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from .errors import ConfigError

if TYPE_CHECKING:
    from .sensors.base import Sensor
    from .summary_build import Price

__all__ = ["DEFAULT_OUTPUT_DIR", "DEFAULT_RATE_HZ", "TrackerConfig", "check_option_names"]

DEFAULT_OUTPUT_DIR = "energy-runs"
DEFAULT_RATE_HZ = 10.0
ENV_OUTPUT_DIR = "ENERGY_TRACKER_OUTPUT_DIR"

PathLike = Union[str, "os.PathLike[str]"]
_NUMBER = (int, float)
_PATH = (str, os.PathLike)

# option -> (accepted types, what to say when it is something else). bool is refused where a
# number is wanted (True is an int to Python, never a rate or a PUE to a user).
_OPTION_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "region": ((str, type(None)), "a region code such as \"DE\" or \"US-CAL-CISO\", "
                                  "\"auto\", or None"),
    "gco2_per_kwh": ((*_NUMBER, type(None)), "a number (g CO2e per kWh) or None"),
    "mix": ((Mapping, type(None)), "a dict of source -> share, e.g. {\"coal\": 0.4}"),
    "live_intensity": ((str, type(None)), "a provider spec such as \"uk\" or "
                                          "\"electricitymaps:DE\", or None"),
    "intensity_refresh_s": (_NUMBER, "a number of seconds"),
    "intensity_token": ((str, type(None)), "a string or None"),
    "intensity_base_url": ((str, type(None)), "a URL string or None"),
    "pue": ((*_NUMBER, type(None)), "a number >= 1 or None"),
    "rate_hz": (_NUMBER, "a number (Hz)"),
    "counter_interval_s": (_NUMBER, "a number of seconds"),
    "cpu": ((bool,), "True or False"),
    "ram": ((bool,), "True or False"),
    "node": ((bool,), "True or False"),
    "output_dir": ((*_PATH, type(None)), "a path (str or os.PathLike) or None"),
    "run_dir": ((*_PATH, type(None)), "a path (str or os.PathLike) or None"),
    "summary_every_s": (_NUMBER, "a number of seconds"),
    "prometheus_port": ((int, type(None)), "a TCP port number or None"),
    "job_timeout_s": (_NUMBER, "a number of seconds"),
    "grid_year": ((int, type(None)), "a year such as 2023, or None"),
    "powercap_root": (_PATH, "a path (str or os.PathLike)"),
    "hwmon_root": ((*_PATH, type(None)), "a path (str or os.PathLike) or None"),
    "report_html": ((bool, type(None)), "True, False or None (the default: on when plotly "
                                        "is installed)"),
}

# One set of bounds, used by every caller (Python API, callbacks, CLI).
_BOUNDS: dict[str, tuple[float, float, str]] = {
    "pue": (1.0, 10.0, "PUE is facility energy / IT energy, so it is >= 1.0 "
                       "(typical data centres: 1.1-1.6)"),
    "rate_hz": (0.01, 100.0, "the default is 10 Hz"),
    "counter_interval_s": (0.1, 3600.0, "the default is 1 s"),
    "summary_every_s": (0.5, 86400.0, "the default is 10 s"),
    "job_timeout_s": (0.0, 3600.0, "the default is 10 s"),
}


@dataclass(frozen=True)
class TrackerConfig:
    """Every option of `Tracker` / `track()`, validated (see `Tracker` for their meaning).

    Paths are absolute; `pue` is the value used (1.0 when not given, `pue_source` says so);
    `intensity_token` is never shown by repr and never written to disk.
    """

    name: str = "run"
    region: Optional[str] = None
    gco2_per_kwh: Optional[float] = None
    mix: Optional[Mapping[str, float]] = None
    grid_year: Optional[int] = None
    live_intensity: Optional[str] = None
    intensity_refresh_s: float = 900.0
    intensity_token: Optional[str] = field(default=None, repr=False)
    intensity_base_url: Optional[str] = None
    pue: Optional[float] = None
    rate_hz: float = DEFAULT_RATE_HZ
    counter_interval_s: float = 1.0
    gpus: Optional[tuple[Union[int, str], ...]] = None
    cpu: bool = True
    ram: bool = True
    node: bool = True
    cpu_tdp_w: Optional[float] = None
    powercap_root: PathLike = "/sys/class/powercap"
    hwmon_root: Optional[PathLike] = None
    sensors: Optional[tuple[Sensor, ...]] = None
    output_dir: Optional[Path] = None
    run_dir: Optional[Path] = None
    summary_every_s: float = 10.0
    emissions_csv: Union[bool, Path] = True
    prometheus_port: Optional[int] = None
    job: Union[str, bool, None] = None
    job_timeout_s: float = 10.0
    price_per_kwh: Optional[float] = None
    currency: Optional[str] = None
    log_to: Any = None
    log_every_steps: Optional[int] = 50
    log_min_interval_s: float = 10.0
    report_html: Optional[bool] = None

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def from_options(cls, name: str = "run", **options: Any) -> TrackerConfig:
        """The validated configuration; ConfigError naming the option, what was given, what
        is accepted (and the closest option name for a misspelt one)."""
        check_option_names(options)
        _check_types(options)
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"name must be a non-empty string, got {name!r}")
        values: dict[str, Any] = dict(options)
        values["name"] = name
        for key, (low, high, hint) in _BOUNDS.items():
            if options.get(key) is not None:
                values[key] = _check_number(key, options[key], low=low, high=high, hint=hint)
        if options.get("cpu_tdp_w") is not None:
            from .sensors.model import validate_tdp_w
            values["cpu_tdp_w"] = validate_tdp_w(options["cpu_tdp_w"])
        if options.get("gpus") is not None:
            values["gpus"] = tuple(options["gpus"])
        if options.get("sensors") is not None:
            values["sensors"] = tuple(options["sensors"])
        if options.get("mix") is not None:
            values["mix"] = dict(options["mix"])
        port = options.get("prometheus_port")
        if port is not None and not 0 <= port < 65536:
            raise ConfigError(f"prometheus_port must be a TCP port number (0-65535), "
                              f"got {port!r}")
        job = options.get("job")
        if not (job is None or isinstance(job, bool) or (isinstance(job, str) and job.strip())):
            raise ConfigError(f"job must be a job id (a non-empty string), True/None to detect "
                              f"the job from the launcher, or False for no job; got {job!r}")
        if isinstance(job, str):
            values["job"] = job.strip()
        price = _check_price(options.get("price_per_kwh"), options.get("currency"))
        if price is not None:
            values["price_per_kwh"], values["currency"] = price.per_kwh, price.currency
        values["emissions_csv"] = _check_emissions_csv(options.get("emissions_csv", True))
        # Paths are made absolute now: a later chdir in the training script moves nothing.
        out = options.get("output_dir") or os.environ.get(ENV_OUTPUT_DIR) or DEFAULT_OUTPUT_DIR
        values["output_dir"] = Path(out).expanduser().absolute()
        if options.get("run_dir") is not None:
            values["run_dir"] = Path(options["run_dir"]).expanduser().absolute()
        config = cls(**values)
        config._check_carbon()
        from .exporters import _check_every_steps, _check_min_interval, make_exporters
        _check_every_steps(config.log_every_steps)
        _check_min_interval(config.log_min_interval_s)
        make_exporters(config.log_to)   # names and libraries checked; nothing imported
        _check_writable(config.run_dir or config.output_dir or Path(DEFAULT_OUTPUT_DIR))
        return config

    def _check_carbon(self) -> None:
        """The region / factor / mix / year combination and the live provider spec."""
        if self.region is not None and self.region.strip().lower() == "auto":
            # detected by the Tracker (it reads the machine); the rest is checked then
            return
        from .carbon import make_live_intensity, resolve_factor
        factor = resolve_factor(self.region, gco2_per_kwh=self.gco2_per_kwh, mix=self.mix,
                                grid_year=self.grid_year)
        make_live_intensity(self.live_intensity, factor, **self.live_options())

    # -- views ---------------------------------------------------------------------------------
    @property
    def pue_value(self) -> float:
        """The PUE the run uses: the user's, else 1.0 (IT energy only)."""
        return 1.0 if self.pue is None else float(self.pue)

    @property
    def pue_source(self) -> str:
        return "default (1.0: IT energy only)" if self.pue is None else "user"

    @property
    def price(self) -> Optional[Price]:
        if self.price_per_kwh is None or self.currency is None:
            return None
        from .summary_build import Price
        return Price(self.price_per_kwh, self.currency)

    def live_options(self) -> dict[str, Any]:
        """Keyword arguments for the live intensity provider (cache_dir is the Tracker's)."""
        return {"refresh_s": self.intensity_refresh_s, "token": self.intensity_token,
                "base_url": self.intensity_base_url}

    def options(self) -> dict[str, Any]:
        """The options this configuration was built from, for `Tracker(name, **options)`
        (a fresh tracker with the same settings)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        for key in ("gpus", "sensors"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    def manifest(self) -> dict[str, Any]:
        """What run.json records of the configuration: JSON-safe, no token, no sensors."""
        keep = ("region", "gco2_per_kwh", "mix", "live_intensity", "rate_hz",
                "counter_interval_s", "cpu", "ram", "cpu_tdp_w", "node", "summary_every_s",
                "job", "job_timeout_s", "price_per_kwh", "currency", "grid_year", "log_to",
                "log_every_steps", "log_min_interval_s", "report_html")
        out = {k: getattr(self, k) for k in keep}
        out["pue"] = self.pue_value
        out["gpus"] = list(self.gpus) if self.gpus is not None else None
        return out


def option_names() -> list[str]:
    return [f.name for f in fields(TrackerConfig) if f.name != "name"]


def check_option_names(options: Mapping[str, Any]) -> None:
    """ConfigError for an option the tracker does not have, with the closest names."""
    known = option_names()
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"unknown option {key!r}{hint} (options: {', '.join(known)})")


def _check_types(options: Mapping[str, Any]) -> None:
    """ConfigError naming the option, the value and what it takes; bool is not a number."""
    for name, value in options.items():
        if name == "gpus":
            _check_gpus(value)
            continue
        if name == "sensors":
            if value is not None and (isinstance(value, (str, bytes)) or
                                      not hasattr(value, "__iter__")):
                raise ConfigError(f"sensors must be a list of sensors, got {value!r}")
            continue
        if name not in _OPTION_TYPES:   # checked by their own validators below
            continue
        kinds, what = _OPTION_TYPES[name]
        bad_bool = isinstance(value, bool) and bool not in kinds
        if bad_bool or not isinstance(value, kinds):
            raise ConfigError(f"{name} must be {what}, got {value!r} "
                              f"({type(value).__name__})")
        if isinstance(value, _PATH) and "\0" in os.fspath(value):
            raise ConfigError(f"{name} contains a NUL character: {value!r}")


def _check_gpus(gpus: Any) -> None:
    if gpus is None:
        return
    if isinstance(gpus, (str, bytes, int)) or not hasattr(gpus, "__iter__"):
        raise ConfigError(f"gpus must be a list of GPU indices or UUIDs, e.g. [0, 1] or "
                          f"[\"GPU-…\"], got {gpus!r}")
    for g in gpus:
        if isinstance(g, bool) or not isinstance(g, (int, str)):
            raise ConfigError(f"gpus entries must be indices (int) or UUIDs (str), got {g!r} "
                              f"({type(g).__name__}) in {list(gpus)!r}")


def _check_number(name: str, value: Any, *, low: float, high: float, hint: str = "") -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < low or x > high:
        raise ConfigError(f"{name}={value!r} is out of range [{low:g}, {high:g}]"
                          + (f": {hint}" if hint else ""))
    return x


def _check_price(price_per_kwh: Any, currency: Any) -> Optional[Price]:
    """A Price, or None. Both or neither: a cost without its currency means nothing."""
    from .summary_build import Price

    if price_per_kwh is None and currency is None:
        return None
    if price_per_kwh is None:
        raise ConfigError(f"currency={currency!r} was given without price_per_kwh=; give both "
                          "(e.g. price_per_kwh=0.21, currency=\"EUR\") or neither")
    if isinstance(price_per_kwh, bool):
        raise ConfigError(f"price_per_kwh must be a number (price of 1 kWh), got {price_per_kwh!r}")
    value = _check_number("price_per_kwh", price_per_kwh, low=0.0, high=1000.0,
                          hint="the price of 1 kWh of electricity, e.g. 0.21")
    if not isinstance(currency, str) or not currency.strip() or len(currency.strip()) > 8:
        raise ConfigError(f"price_per_kwh needs currency= as a short code such as \"EUR\" or "
                          f"\"USD\", got {currency!r}")
    return Price(value, currency.strip())


def _check_emissions_csv(value: Any) -> Union[bool, Path]:
    """True/False, or the CSV file to append to: a path ending in .csv, absolute or relative
    to the current directory (resolved now, so a later chdir does not move it)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, os.PathLike)) and str(value).strip().lower().endswith(".csv"):
        path = Path(value).expanduser().absolute()
        if path.is_dir():
            raise ConfigError(f"emissions_csv={value!r} is a directory; give a .csv file path")
        _check_writable(path.parent)
        return path
    raise ConfigError(f"emissions_csv must be True (append to <output_dir>/emissions.csv), False "
                      f"(no CSV row) or a path to a .csv file (absolute or relative to the "
                      f"current directory); got {value!r}")


def _check_writable(path: Path) -> None:
    """Fail at construction, not after an hour of training, if logs cannot be written."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"Cannot write the run log under {path}: {probe} is not a writable "
                          "directory. Pass output_dir= (CLI: --output-dir) with a writable "
                          "directory.")
