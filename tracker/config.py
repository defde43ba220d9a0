"""The tracker's options, declared once, as one validated, immutable configuration.

Every option is one field of `TrackerConfig` below, declared with `_option(...)`: its default,
the type an argument may have, what is accepted (in words, for errors), bounds or a
validator, its environment variable, its `energy-tracker run` flag and its help text. From
that one declaration come the type checks and bounds, the environment variables, the
signatures of `Tracker`/`track()` and of the framework callbacks (so `inspect`, IDEs and
jsonargparse/LightningCLI see typed keyword parameters), the flags of `energy-tracker run`
and docs/options.md (scripts/gen_options_doc.py). A new option is written once, here.

`TrackerConfig.from_options(name, **options)` is the only place options are checked: types,
bounds, combinations, close matches for a misspelt option. Precedence: an argument, else the
option's environment variable (ENERGY_TRACKER_*), else the default; `sources` says which, for
every option that is not at its default. It opens no device, starts no thread, writes nothing
and calls no network; it reads only the bundled grid tables (to check a region) and stats the
output directory (so an unwritable one fails now, not after an hour of training).
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Optional,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from .errors import ConfigError

if TYPE_CHECKING:
    from .accounting.price import Price
    from .sensors.base import Sensor

__all__ = ["DEFAULT_OUTPUT_DIR", "DEFAULT_RATE_HZ", "ENV_PREFIX", "OPTIONS", "Option",
           "TrackerConfig", "check_option_names", "given_options", "option_names",
           "options_docstring", "signature_with_options"]

DEFAULT_OUTPUT_DIR = "energy-runs"
DEFAULT_RATE_HZ = 10.0
ENV_PREFIX = "ENERGY_TRACKER_"
ENV_OUTPUT_DIR = "ENERGY_TRACKER_OUTPUT_DIR"

PathLike = Union[str, "os.PathLike[str]"]
_NUMBER = (int, float)
_PATH = (str, os.PathLike)
ARGUMENT = "argument"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One option, declared once (see the module docstring for what is derived from it)."""

    name: str
    default: Any
    accepts: Any                 # the type hint of an argument (signatures, jsonargparse)
    help: str
    what: Optional[str] = None   # what is accepted, in words; None: `check` says it
    bounds: Optional[tuple[float, float, str]] = None   # (low, high, hint) for a number
    check: Optional[Callable[[Any], Any]] = None        # the value to use, or ConfigError
    env: Optional[str] = None    # its environment variable
    cli: Optional[str] = None    # its flag of `energy-tracker run`
    cli_help: Optional[str] = None   # where the command line reads it otherwise
    metavar: Optional[str] = None
    text: Optional[str] = None   # how a text (env, flag) is read; None: from `accepts`
    record: bool = True          # in run.json's config
    secret: bool = False         # never shown, never written

    @property
    def kinds(self) -> Optional[tuple[type, ...]]:
        """What isinstance() accepts, derived from `accepts` (None: `check` decides)."""
        return _runtime_kinds(self.accepts) if self.what is not None else None

    @property
    def text_kind(self) -> str:
        """How a text from the environment or a flag becomes a value: number, int, bool,
        list or text."""
        if self.text is not None:
            return self.text
        kinds = _runtime_kinds(self.accepts) or ()
        if float in kinds:
            return "number"
        if int in kinds:
            return "int"
        if bool in kinds:
            return "bool"
        if _is_sequence(self.accepts):
            return "list"
        return "text"

    @property
    def text_accepted(self) -> str:
        return {"number": "a number", "int": "a whole number",
                "bool": f"one of {', '.join(_TRUE + _FALSE)}",
                "list": "a comma-separated list", "bool_or_csv": (
                    f"one of {', '.join(_TRUE + _FALSE)} or a path ending in .csv"),
                }.get(self.text_kind, "a text")

    def from_text(self, text: str, label: str) -> Any:
        """The value of a text given in the environment or on the command line; ConfigError
        naming `label` (the variable or the flag), the text and what is accepted."""
        s = text.strip()
        kind = self.text_kind
        optional = _accepts_none(self.accepts)
        if optional and kind != "text" and s.lower() == "none":
            return None
        try:
            if kind == "number":
                return float(s)
            if kind == "int":
                return int(s)
            if kind in ("bool", "bool_or_csv"):
                if s.lower() in _TRUE:
                    return True
                if s.lower() in _FALSE:
                    return False
                if kind == "bool_or_csv":
                    return s
                raise ValueError(s)
            if kind == "list":
                return [int(p) if p.isdigit() else p
                        for p in (q.strip() for q in s.split(",")) if p]
            if kind == "names":   # one name, or several comma-separated
                names = [p.strip() for p in s.split(",") if p.strip()]
                return names[0] if len(names) == 1 else names
        except ValueError:
            raise ConfigError(f"{label}={text!r}: {self.name} must be "
                              f"{self.text_accepted}") from None
        return s


def _option(accepts: Any, help: str, **spec: Any) -> dict[str, Any]:
    """The metadata that makes a field of TrackerConfig an option (see Option for `spec`;
    the field's default is the option's)."""
    return {"option": dict(accepts=accepts, help=help, **spec)}


def _env(suffix: str) -> str:
    return ENV_PREFIX + suffix


# -- validators used by the declaration ---------------------------------------------------------
def _tdp(value: Any) -> float:
    from .sensors.model import validate_tdp_w
    return validate_tdp_w(value)


def _cpu_scope(value: Any) -> str:
    from .sensors.cpu_scope import check_cpu_scope
    return check_cpu_scope(value)


def _check_gpus(gpus: Any) -> Optional[tuple[Union[int, str], ...]]:
    if gpus is None:
        return None
    if isinstance(gpus, (str, bytes, int)) or not hasattr(gpus, "__iter__"):
        raise ConfigError(f"gpus must be a list of GPU indices or UUIDs, e.g. [0, 1] or "
                          f"[\"GPU-…\"], got {gpus!r}")
    for g in gpus:
        if isinstance(g, bool) or not isinstance(g, (int, str)):
            raise ConfigError(f"gpus entries must be indices (int) or UUIDs (str), got {g!r} "
                              f"({type(g).__name__}) in {list(gpus)!r}")
    return tuple(gpus)


def _check_sensors(value: Any) -> Optional[tuple[Any, ...]]:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"sensors must be a list of sensors, got {value!r}")
    return tuple(value)


def _check_mix(value: Any) -> Optional[dict[str, float]]:
    return None if value is None else dict(value)


def _check_port(port: Any) -> Optional[int]:
    if port is not None and not 0 <= port < 65536:
        raise ConfigError(f"prometheus_port must be a TCP port number (0-65535), got {port!r}")
    return port   # type: ignore[no-any-return]


def _check_job(job: Any) -> Union[str, bool, None]:
    if not (job is None or isinstance(job, bool) or (isinstance(job, str) and job.strip())):
        raise ConfigError(f"job must be a job id (a non-empty string), True/None to detect "
                          f"the job from the launcher, or False for no job; got {job!r}")
    return job.strip() if isinstance(job, str) else job


def _check_dir(value: Any) -> Optional[Path]:
    # Paths are made absolute now: a later chdir in the training script moves nothing.
    return None if value is None or value == "" else Path(value).expanduser().absolute()


def _check_embodied_option(value: Any) -> Any:
    return _check_embodied(value) if isinstance(value, Mapping) else value


def _check_log_to(value: Any) -> Any:
    from .exporters.options import check_log_to
    check_log_to(value)   # names and libraries checked; nothing imported
    return value


def _check_log_every(value: Any) -> Optional[int]:
    from .exporters.options import check_every_steps
    return check_every_steps(value)


def _check_step_detail(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_STEP_DETAIL:
        raise ConfigError(f"step_detail_steps must be a whole number of steps >= "
                          f"{MIN_STEP_DETAIL:,} (the default is {DEFAULT_STEP_DETAIL:,}), or "
                          f"None to keep every step's record; got {value!r}")
    return value


# 500 000 per-step records (~22 MB of steps.bin, ~31 MB at most with its segments) are the
# last ~80 min of 10 ms steps, 3 days of 0.5 s steps: the per-step detail one looks at to
# find a slow step; older steps are kept as their groups, which are what a summary shows.
DEFAULT_STEP_DETAIL = 500_000
MIN_STEP_DETAIL = 1_000


def _check_log_interval(value: Any) -> Any:
    from .exporters.options import check_min_interval
    check_min_interval(value)
    return value


_PATH_HINT: Any = Union[str, os.PathLike, None]   # str or os.PathLike[str] (runtime hint)
_LOG_TO_NAMES = ("mlflow", "wandb", "tensorboard", "auto")


@dataclass(frozen=True)
class TrackerConfig:
    """Every option of `Tracker` / `track()`, validated: each field below is one option,
    declared once (docs/options.md is generated from these declarations).

    Paths are absolute; `pue` is the value used (1.0 when not given, `pue_source` says so);
    `intensity_token` is never shown by repr and never written to disk. `sources` says where
    each option not at its default came from ("argument", "env ENERGY_TRACKER_...", or a flag
    of `energy-tracker run`); `environ` holds the ENERGY_TRACKER_* option variables this
    process saw (so a process joining a run can tell its own from the ones it inherited).
    """

    name: str = "run"
    # -- grid and carbon ---------------------------------------------------------------------
    region: Optional[str] = field(default=None, metadata=_option(
        Optional[str],
        "grid region code or name (\"DE\", \"US-CA\", \"gcp:europe-west4\"); None = world "
        "average, named as such in the summary; \"auto\" = cloud instance metadata (opt-in)",
        what="a region code such as \"DE\" or \"US-CAL-CISO\", \"auto\", or None",
        env=_env("REGION"), cli="--region",
        cli_help="grid region, e.g. DE, US-CA, aws:us-east-1"))
    gco2_per_kwh: Optional[float] = field(default=None, metadata=_option(
        Optional[float], "override the grid factor (gCO2e/kWh)",
        what="a number (g CO2e per kWh) or None", env=_env("GCO2_PER_KWH"),
        cli="--gco2-per-kwh"))
    mix: Optional[Mapping[str, float]] = field(default=None, metadata=_option(
        Optional[Mapping[str, float]],
        "custom energy mix, e.g. {\"wind\": 0.7, \"grid\": 0.3} (lifecycle factors)",
        what="a dict of source -> share, e.g. {\"coal\": 0.4}", check=_check_mix))
    grid_year: Optional[int] = field(default=None, metadata=_option(
        Optional[int],
        "the region's grid factor in that year (countries and aggregates: 1990-2025, Ember via "
        "Our World in Data) instead of the newest; the summary names the year",
        what="a year such as 2023, or None", env=_env("GRID_YEAR"), cli="--grid-year",
        metavar="YEAR"))
    live_intensity: Optional[str] = field(default=None, metadata=_option(
        Optional[str],
        "opt-in live provider, e.g. \"uk\", \"uk:REGIONID\", \"electricitymaps:DE\", "
        "\"energidataservice:DK1\"; falls back to the annual factor on any failure",
        what="a provider spec such as \"uk\" or \"electricitymaps:DE\", or None",
        env=_env("LIVE_INTENSITY"), cli="--live-intensity"))
    intensity_refresh_s: float = field(default=900.0, metadata=_option(
        float, "seconds between two reads of the live provider (default 900)",
        what="a number of seconds", env=_env("INTENSITY_REFRESH_S")))
    intensity_token: Optional[str] = field(default=None, repr=False, metadata=_option(
        Optional[str],
        "the live provider's API token (Electricity Maps: else $ELECTRICITYMAPS_TOKEN); "
        "never shown, never written", what="a string or None", secret=True, record=False))
    intensity_base_url: Optional[str] = field(default=None, metadata=_option(
        Optional[str], "the live provider's base URL (default: its public API)",
        what="a URL string or None", record=False))
    pue: Optional[float] = field(default=None, metadata=_option(
        Optional[float],
        "power usage effectiveness (>= 1.0); facility energy = IT energy x PUE (default: "
        "1.0, IT energy only)",
        what="a number >= 1 or None",
        bounds=(1.0, 10.0, "PUE is facility energy / IT energy, so it is >= 1.0 "
                           "(typical data centres: 1.1-1.6)"),
        env=_env("PUE"), cli="--pue", cli_help="power usage effectiveness (>= 1)"))
    # -- sampling and sensors ----------------------------------------------------------------
    rate_hz: float = field(default=DEFAULT_RATE_HZ, metadata=_option(
        float, "power sampling rate (default 10 Hz)", what="a number (Hz)",
        bounds=(0.01, 100.0, "the default is 10 Hz"), env=_env("RATE_HZ"), cli="--rate",
        cli_help="sampling rate, Hz (default 10)"))
    counter_interval_s: float = field(default=1.0, metadata=_option(
        float,
        "seconds between scheduled energy-counter reads (default 1 s; counters are also read "
        "at every window edge and at stop)", what="a number of seconds",
        bounds=(0.1, 3600.0, "the default is 1 s"), env=_env("COUNTER_INTERVAL_S"),
        cli="--counter-interval-s"))
    gpus: Optional[tuple[Union[int, str], ...]] = field(default=None, metadata=_option(
        Optional[Sequence[Union[int, str]]],
        "GPUs to measure (NVML/HIP indices or UUIDs); default the *_VISIBLE_DEVICES variables "
        "(CUDA_, HIP_, ROCR_), or all", check=_check_gpus, env=_env("GPUS"), cli="--gpus",
        metavar="0,1"))
    cpu: bool = field(default=True, metadata=_option(
        bool, "measure the CPU (default True)", what="True or False",
        env=_env("CPU"), cli="--cpu"))
    ram: bool = field(default=True, metadata=_option(
        bool, "measure RAM (default True)", what="True or False",
        env=_env("RAM"), cli="--ram"))
    node: bool = field(default=True, metadata=_option(
        bool,
        "use a whole-node power meter (hwmon: ACPI power meter, Grace Hopper module) when the "
        "machine has one (default True); it is then the IT total, and GPU, CPU and RAM are "
        "reported as parts of it", what="True or False", env=_env("NODE_METER"),
        cli="--node-meter"))
    cpu_tdp_w: Optional[float] = field(default=None, metadata=_option(
        Optional[float], "CPU TDP (W) for the CPU power model", check=_tdp,
        env=_env("CPU_TDP_W"), cli="--cpu-tdp", cli_help="CPU TDP in W for the CPU model"))
    cpu_scope: str = field(default="machine", metadata=_option(
        str,
        "whose CPU time the CPU and RAM models bill: \"machine\" (default: the whole "
        "machine's, as a RAPL counter counts it; right when the run has the machine to "
        "itself) or \"process\" (on a shared machine: the run's share, i.e. this process "
        "tree's CPU time, dataloader workers and `energy-tracker run`'s command included, or "
        "a SLURM job's cgroup, over the machine's busy CPU time; RAM: the run's resident "
        "memory). RAPL counters stay whole-machine",
        check=_cpu_scope, env=_env("CPU_SCOPE"), cli="--cpu-scope",
        metavar="machine|process"))
    powercap_root: PathLike = field(default="/sys/class/powercap", metadata=_option(
        Union[str, os.PathLike],
        "where to look for RAPL meters (default /sys/class/powercap)",
        what="a path (str or os.PathLike)", env=_env("POWERCAP_ROOT"), cli="--powercap-root",
        metavar="DIR", record=False))
    hwmon_root: Optional[PathLike] = field(default=None, metadata=_option(
        _PATH_HINT, "where to look for hwmon meters (default /sys/class/hwmon)",
        what="a path (str or os.PathLike) or None", env=_env("HWMON_ROOT"),
        cli="--hwmon-root", metavar="DIR", record=False))
    sensors: Optional[tuple[Sensor, ...]] = field(default=None, metadata=_option(
        Optional[Sequence[Any]],
        "sensor objects to measure instead of the ones found (tests, custom meters)",
        check=_check_sensors, record=False))
    # -- where results go --------------------------------------------------------------------
    output_dir: Optional[Path] = field(default=None, metadata=_option(
        _PATH_HINT, "root of run directories (default ./energy-runs)",
        what="a path (str or os.PathLike) or None", check=_check_dir,
        env=_env("OUTPUT_DIR"), cli="--output-dir",
        cli_help="root of run dirs (default ./energy-runs)", record=False))
    run_dir: Optional[Path] = field(default=None, metadata=_option(
        _PATH_HINT, "the exact run directory (default: a new one under output_dir)",
        what="a path (str or os.PathLike) or None", check=_check_dir, record=False))
    summary_every_s: float = field(default=10.0, metadata=_option(
        float, "how often summary.json is rewritten while running (default 10 s)",
        what="a number of seconds", bounds=(0.5, 86400.0, "the default is 10 s"),
        env=_env("SUMMARY_EVERY_S"), cli="--summary-every-s"))
    step_detail_steps: Optional[int] = field(default=DEFAULT_STEP_DETAIL, metadata=_option(
        Optional[int],
        "how many of the newest steps keep their own record on disk (steps.bin, 44 B a step; "
        "default 500000, ~31 MB at most); older steps are kept as their groups "
        "(step_groups.jsonl: energy, steps, samples, tokens, first/last step), so totals, "
        "windows and the summary are unchanged; None: every step's record",
        check=_check_step_detail, env=_env("STEP_DETAIL_STEPS"), cli="--step-detail-steps",
        metavar="N"))
    emissions_csv: Union[bool, Path] = field(default=True, metadata=_option(
        Union[bool, str, os.PathLike],
        "True (default): append a row to <output_dir>/emissions.csv at stop (CodeCarbon's "
        "columns first); False: no row; a path ending in .csv (absolute, or relative to the "
        "current directory): append to that file instead",
        check=lambda v: _check_emissions_csv(v), env=_env("EMISSIONS_CSV"),
        cli="--emissions-csv", metavar="FILE.csv", text="bool_or_csv",
        cli_help="CodeCarbon-compatible emissions.csv to append the run's row to (default: "
                 "<output-dir>/emissions.csv; 0: none)"))
    prometheus_port: Optional[int] = field(default=None, metadata=_option(
        Optional[int],
        "serve Prometheus metrics on 127.0.0.1:PORT while running (needs the `prometheus` "
        "extra)", what="a TCP port number or None", check=_check_port,
        env=_env("PROMETHEUS_PORT"), cli="--prometheus-port", metavar="PORT", record=False))
    # -- jobs --------------------------------------------------------------------------------
    job: Union[str, bool, None] = field(default=None, metadata=_option(
        Union[str, bool, None],
        "distributed jobs (torchrun, SLURM, MPI, torch.distributed) are found from the "
        "launcher's environment (default None = detect); a string names the job yourself; "
        "False = every process is a run of its own", check=_check_job, env=_env("JOB"),
        cli="--job", text="text",
        cli_help="job id for a multi-node job launched on each node (default: from the "
                 "launcher, e.g. torchrun's or SLURM's ids)"))
    job_timeout_s: float = field(default=10.0, metadata=_option(
        float,
        "how long a stopping process of a job waits for the others before leaving the job "
        "summary to whoever stops last (default 10 s)", what="a number of seconds",
        bounds=(0.0, 3600.0, "the default is 10 s"), env=_env("JOB_TIMEOUT_S"),
        cli="--job-timeout-s"))
    # -- cost and reporting ------------------------------------------------------------------
    price_per_kwh: Optional[float] = field(default=None, metadata=_option(
        Optional[float],
        "electricity price of the facility energy (with currency=, e.g. 0.21 and \"EUR\"): "
        "the summary, each window, the job report and the CSV get its cost; no price, no cost",
        env=_env("PRICE_PER_KWH"), cli="--price-per-kwh"))
    currency: Optional[str] = field(default=None, metadata=_option(
        Optional[str], "the currency of price_per_kwh, a short code such as \"EUR\"",
        env=_env("CURRENCY"), cli="--currency"))
    log_to: Any = field(default=None, metadata=_option(
        Any,
        "log energy to experiment trackers: \"mlflow\", \"wandb\", \"tensorboard\", a list "
        "of them, \"auto\" (an MLflow and/or W&B run the program already has), or exporter "
        "objects (see tracker/exporters); each tool is an optional extra",
        check=_check_log_to, env=_env("LOG_TO"), cli="--log-to", text="names",
        cli_help="also log energy/CO2e to this tracker's active run (repeatable)"))
    log_every_steps: Optional[int] = field(default=50, metadata=_option(
        Optional[int],
        "with log_to, also log every N steps (default 50; None: epoch ends only), at most once "
        "per log_min_interval_s", check=_check_log_every, env=_env("LOG_EVERY_STEPS"),
        cli="--log-every-steps"))
    log_min_interval_s: float = field(default=10.0, metadata=_option(
        float, "the least time between two step-triggered logs (default 10 s)",
        check=_check_log_interval, env=_env("LOG_MIN_INTERVAL_S"), cli="--log-min-interval-s"))
    report_html: Optional[bool] = field(default=None, metadata=_option(
        Optional[bool],
        "write report.html (an offline page of charts, no extra dependency) next to "
        "summary.json when the run or the job ends; default None: on. Skipped for terminated "
        "and interrupted runs",
        what="True, False or None (the default: on)",
        env=_env("REPORT_HTML"), cli="--report-html"))
    quiet: bool = field(default=False, metadata=_option(
        bool,
        "no end-of-run block on stderr (the ~5 lines printed when the run or the job ends: "
        "energy, emissions, methods, grid, the run directory and the report; default False). "
        "`summary.format()` is the full text either way",
        what="True or False", env=_env("QUIET"), cli="--quiet"))
    # -- publishing (embodied emissions, water) ----------------------------------------------
    embodied: Union[bool, Mapping[str, float]] = field(default=True, metadata=_option(
        Union[bool, Mapping[str, float]],
        "embodied emissions of the hardware: True (published figures), False (none) or a dict "
        "of GPU model -> kg CO2e per device",
        what="True (published figures), False (none) or a dict of GPU model -> kg CO2e per "
             "device, e.g. {\"H100\": 150}",
        check=_check_embodied_option, env=_env("EMBODIED"), cli="--embodied", text="bool"))
    hardware_lifetime_years: Optional[float] = field(default=None, metadata=_option(
        Optional[float], "hardware lifetime for the embodied estimate (default 6)",
        what="a number of years or None",
        bounds=(0.5, 30.0, "the years the hardware is used before replacement (default 6, as "
                           "the BLOOM study)"),
        env=_env("HARDWARE_LIFETIME_YEARS"), cli="--hardware-lifetime-years"))
    hardware_utilisation: Optional[float] = field(default=None, metadata=_option(
        Optional[float],
        "hardware utilisation over its lifetime, 0-1, for the embodied estimate (default 0.85)",
        what="a fraction in (0, 1] or None",
        bounds=(0.01, 1.0, "the share of its lifetime the hardware is in use (default 0.85, as "
                           "the BLOOM study)"),
        env=_env("HARDWARE_UTILISATION"), cli="--hardware-utilisation"))
    wue: Optional[float] = field(default=None, metadata=_option(
        Optional[float],
        "on-site water usage effectiveness (L/kWh) for a water estimate",
        what="a number (L/kWh) or None",
        bounds=(0.0, 20.0, "water usage effectiveness, litres per kWh of facility energy "
                           "(data centres report about 0.1-2)"),
        env=_env("WUE"), cli="--wue", metavar="L_PER_KWH"))

    # not options: where the options came from
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def from_options(cls, name: str = "run", *, sources: Optional[Mapping[str, str]] = None,
                     environ: Optional[Mapping[str, str]] = None,
                     **options: Any) -> TrackerConfig:
        """The validated configuration; ConfigError naming the option (or its environment
        variable), what was given and what is accepted (and the closest option name for a
        misspelt one). An option given as None whose default is None counts as not given, so
        its environment variable applies. `sources`: labels for the given options (default
        "argument", e.g. "--pue" for the command line); `environ`: the environment to read
        (default os.environ)."""
        check_option_names(options)
        given = {k: v for k, v in options.items()
                 if not (v is None and OPTIONS[k].default is None)}
        labels = {k: (sources or {}).get(k, ARGUMENT) for k in given}
        env = os.environ if environ is None else environ
        seen: dict[str, str] = {}
        raw: dict[str, Any] = dict(given)
        for opt in OPTIONS.values():
            text = env.get(opt.env) if opt.env else None
            if opt.env is None or text is None or not text.strip():
                continue
            seen[opt.env] = "<set>" if opt.secret else text
            if opt.name not in given:
                raw[opt.name] = opt.from_text(text, opt.env)
                labels[opt.name] = f"env {opt.env}"
        _check_name(name)
        values: dict[str, Any] = {"name": name}
        for key, value in raw.items():
            values[key] = _checked(OPTIONS[key], value, _blame(labels[key], key, value, env))
        if values.get("output_dir") is None:
            values["output_dir"] = _check_dir(DEFAULT_OUTPUT_DIR)
        if "emissions_csv" not in values:
            values["emissions_csv"] = _check_emissions_csv(True)
        involved = _Involved(labels, env)
        with involved("price_per_kwh", "currency"):
            price = _check_price(values.get("price_per_kwh"), values.get("currency"))
        if price is not None:
            values["price_per_kwh"], values["currency"] = price.per_kwh, price.currency
        config = cls(**values, sources=dict(labels), environ=seen)
        with involved("region", "gco2_per_kwh", "grid_year", "live_intensity",
                      "intensity_refresh_s"):
            config._check_carbon()
        with involved("output_dir"):
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
        # the default says what it means and how to change it (readers match "default")
        return ("default: IT energy only; pass pue= or ENERGY_TRACKER_PUE" if self.pue is None
                else "user")

    @property
    def price(self) -> Optional[Price]:
        if self.price_per_kwh is None or self.currency is None:
            return None
        from .accounting.price import Price
        return Price(self.price_per_kwh, self.currency)

    def live_options(self) -> dict[str, Any]:
        """Keyword arguments for the live intensity provider (cache_dir is the Tracker's)."""
        return {"refresh_s": self.intensity_refresh_s, "token": self.intensity_token,
                "base_url": self.intensity_base_url}

    def options(self) -> dict[str, Any]:
        """The options this configuration was built from, for `Tracker(name, **options)`
        (a fresh tracker with the same settings)."""
        out = {name: getattr(self, name) for name in OPTIONS}
        for key in ("gpus", "sensors"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    def manifest(self) -> dict[str, Any]:
        """What run.json records of the configuration: JSON-safe, no token, no sensors, and
        where each option not at its default came from (`sources`)."""
        out = {k: getattr(self, k) for k, opt in OPTIONS.items() if opt.record}
        out["pue"] = self.pue_value
        out["gpus"] = list(self.gpus) if self.gpus is not None else None
        # where the run's emissions row goes, for a reader that ends a killed run
        out["emissions_csv"] = (str(self.emissions_csv) if isinstance(self.emissions_csv, Path)
                                else self.emissions_csv)
        out["sources"] = {k: v for k, v in self.sources.items() if not OPTIONS[k].secret}
        out["env"] = dict(self.environ)
        return out

    def own_options(self, run_config: Optional[Mapping[str, Any]] = None) -> set[str]:
        """The options this process asked for itself, for a run it joins whose run.json
        config is `run_config`: those given as arguments, and those from an environment
        variable that the run's own process did not see with the same value (a child inherits
        its launcher's environment; that part is the launcher's, not the child's)."""
        theirs = (run_config or {}).get("env") or {}
        own = set()
        for key, source in self.sources.items():
            if source.startswith("env "):
                var = source[4:]
                if isinstance(theirs, Mapping) and theirs.get(var) == self.environ.get(var):
                    continue
            own.add(key)
        return own

    def options_note(self) -> Optional[str]:
        """One line for the summary: each option not at its default, and where it came
        from, e.g. "options: region=DE (ENERGY_TRACKER_REGION), pue=1.2 (argument)"."""
        parts = []
        for key, source in self.sources.items():
            where = source[4:] if source.startswith("env ") else source
            parts.append(f"{key}={_shown(OPTIONS[key], getattr(self, key))} ({where})")
        return "options: " + ", ".join(parts) if parts else None


# -- the declaration, derived ------------------------------------------------------------------
def _declared() -> dict[str, Option]:
    out = {}
    for f in fields(TrackerConfig):
        spec = f.metadata.get("option")
        if spec is not None:
            out[f.name] = Option(name=f.name, default=f.default, **spec)
    return out


OPTIONS: dict[str, Option] = _declared()


def option_names() -> list[str]:
    return list(OPTIONS)


def check_option_names(options: Mapping[str, Any]) -> None:
    """ConfigError for an option the tracker does not have, with the closest names."""
    known = option_names()
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"unknown option {key!r}{hint} (options: {', '.join(known)})")


def given_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a framework actually set: jsonargparse (LightningCLI) and YAML configs
    pass every parameter of a callback, at its default when not set; such a default must
    not count as an argument (it would hide the option's environment variable)."""
    out = {}
    for key, value in options.items():
        opt = OPTIONS.get(key)
        if opt is not None and (value is opt.default or (
                type(value) is type(opt.default) and value == opt.default)):
            continue
        out[key] = value
    return out


def option_parameters() -> list[inspect.Parameter]:
    """Every option as a typed keyword-only parameter (for signatures)."""
    return [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default,
                              annotation=o.accepts) for o in OPTIONS.values()]


def signature_with_options(func: Callable[..., Any], *,
                           return_annotation: Any = inspect.Signature.empty
                           ) -> inspect.Signature:
    """`func`'s signature with its `**options` replaced by every declared option as a typed
    keyword-only parameter, so that inspect, IDEs and jsonargparse see them. Annotations are
    evaluated (jsonargparse reads them as types, not strings)."""
    sig = inspect.signature(func)
    try:
        hints = get_type_hints(func)
    except Exception:   # a hint that cannot be evaluated here stays as written
        hints = {}
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            taken = {q.name for q in params}
            params += [q for q in option_parameters() if q.name not in taken]
            continue
        params.append(p.replace(annotation=hints.get(p.name, p.annotation)))
    ret = hints.get("return", return_annotation)
    return sig.replace(parameters=params, return_annotation=ret)


def options_docstring(indent: str = "        ") -> str:
    """The options as a Google-style "Args:" list (for docstrings and jsonargparse's help)."""
    import textwrap
    lines = []
    for o in OPTIONS.values():
        env = f" (env {o.env})" if o.env else ""
        lines += textwrap.wrap(f"{o.name}: {o.help}{env}.", width=92,
                               initial_indent=indent, subsequent_indent=indent + "    ")
    return "\n".join(lines)


def _runtime_kinds(hint: Any) -> Optional[tuple[type, ...]]:
    """The classes an isinstance() check accepts for a type hint (None: anything)."""
    if hint is Any:
        return None
    if hint is type(None):
        return (type(None),)
    if hint is float:
        return _NUMBER
    if hint in (int, str, bool):
        return (hint,)
    origin = get_origin(hint)
    if origin is Union:
        out: list[type] = []
        for part in get_args(hint):
            kinds = _runtime_kinds(part)
            if kinds is None:
                return None
            out += [k for k in kinds if k not in out]
        return tuple(out)
    if hint is os.PathLike or origin is os.PathLike:
        return (os.PathLike,)
    if origin in (Mapping, collections.abc.Mapping, dict) or hint in (Mapping, dict):
        return (Mapping,)
    return None   # sequences and the like: their validator decides


def _accepts_none(hint: Any) -> bool:
    return get_origin(hint) is Union and type(None) in get_args(hint)


def _is_sequence(hint: Any) -> bool:
    parts = get_args(hint) if get_origin(hint) is Union else (hint,)
    return any(get_origin(p) in (Sequence, collections.abc.Sequence, list, tuple)
               for p in parts)


def _shown(opt: Option, value: Any) -> str:
    """An option's value for the summary line: short, never a secret."""
    if opt.secret:
        return "***"
    if opt.name == "sensors" and value is not None:
        return f"{len(value)} sensors"
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _checked(opt: Option, value: Any, label: Optional[str]) -> Any:
    """One option's value, checked: its type, its bounds, its validator. `label` names where
    a value that is not an argument came from (an environment variable, a flag)."""
    try:
        kinds = opt.kinds
        if kinds is not None:
            bad_bool = isinstance(value, bool) and bool not in kinds   # True is not a rate
            if bad_bool or not isinstance(value, kinds):
                raise ConfigError(f"{opt.name} must be {opt.what}, got {value!r} "
                                  f"({type(value).__name__})")
            if isinstance(value, _PATH) and "\0" in os.fspath(value):
                raise ConfigError(f"{opt.name} contains a NUL character: {value!r}")
        if opt.bounds is not None and value is not None:
            low, high, hint = opt.bounds
            value = _check_number(opt.name, value, low=low, high=high, hint=hint)
        return opt.check(value) if opt.check is not None else value
    except ConfigError as e:
        if label is None:
            raise
        raise ConfigError(f"{label}: {e}") from None


def _blame(source: str, key: str, value: Any, env: Mapping[str, str]) -> Optional[str]:
    if source == ARGUMENT:
        return None
    if source.startswith("env "):
        var = source[4:]
        return f"{var}={env.get(var, '')!r}" if not OPTIONS[key].secret else var
    return source


class _Involved:
    """A check of several options together: its error says which of them were not
    arguments (an environment variable, a flag), so the user knows where to look."""

    def __init__(self, labels: Mapping[str, str], env: Mapping[str, str]):
        self._labels = labels
        self._env = env
        self._keys: tuple[str, ...] = ()

    def __call__(self, *keys: str) -> _Involved:
        self._keys = keys
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not isinstance(exc, ConfigError):
            return
        parts = [f"{k} from {b}" for k in self._keys if k in self._labels
                 and (b := _blame(self._labels[k], k, None, self._env)) is not None]
        if parts:
            raise ConfigError(f"{exc} ({'; '.join(parts)})") from None


# Long enough for any real run name; the run directory's name is a bounded slug of it
# (runlog.default_run_dir), so a long name never fails at start with "File name too long".
MAX_NAME_CHARS = 200


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_CHARS:
        raise ConfigError(f"name is {len(name)} characters long ({name[:40]!r}...); at most "
                          f"{MAX_NAME_CHARS} are accepted")
    bad = sorted({c for c in name if ord(c) < 32 or ord(c) == 127})
    if bad:
        raise ConfigError(f"name {name!r} contains control characters "
                          f"({', '.join(repr(c) for c in bad)}); use printable characters only")


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
    """A Price, or None (accounting/price.py checks the pair: both or neither)."""
    from .accounting.price import parse_price
    return parse_price(price_per_kwh, currency)


def _check_embodied(value: Mapping[str, Any]) -> dict[str, float]:
    """embodied={GPU model: kg CO2e per device}: the user's own figures, amortised like ours."""
    out = {}
    for model, kg in value.items():
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"embodied keys must be GPU model names such as \"H100\", got "
                              f"{model!r}")
        out[model.strip()] = _check_number(f"embodied[{model!r}]", kg, low=0.0, high=100000.0,
                                           hint="kg CO2e to manufacture one device")
    return out


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
    # On a shared machine: a world-writable directory without the sticky bit lets any user
    # rename our run directory away and plant links in its place; refuse it now.
    from .safefs import dir_is_shared_unsafe
    why = dir_is_shared_unsafe(path)
    if why is not None:
        raise ConfigError(f"Refusing to write the run log under {path}: {why}.")
