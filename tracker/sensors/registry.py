"""The sensor registry: every kind of sensor, built in or plugged in, and discovery through it.

A *kind* (NVIDIA GPUs, AMD GPUs, hwmon meters, RAPL/CPU-RAM models, or a third party's) says
which components it measures, how it finds its devices (`discover(options) -> Discovery`), what
it reads, its method labels and what a read costs. `discover()` runs every kind in order and
returns one list of sensors; the tracker, `energy-tracker devices`, the summary, the report and
Prometheus only ever see those sensors, so a registered kind's components appear everywhere.

Rules that keep totals honest whatever the kinds:
- "cpu" and "ram" are measured by one kind only: the first that finds them (hwmon's CPU meters,
  then RAPL, then the models). Later kinds are told (`Options.provided`) and skip them.
- GPUs and any other component add up across kinds (an NVIDIA and an AMD GPU are both "gpu").
- A whole-node meter (component "node") is the IT total when there is one: every other device
  of a kind with `in_node=True` is marked `details["included_in"] = "node"` and is reported as
  a part of it, never added to it.
- Sensor names are unique: a later kind's clashing name gets the kind's name as a prefix.

Third-party kinds register through the entry-point group `energy_tracker.sensors`: the entry
point is a `SensorKind`, a list of them, or a callable returning either. They are loaded only
when discovery runs (at start(), unless `gpus=` is given: then at construction, to check the
GPUs named), after a cheap scan of sys.path has seen a distribution that declares the group;
one that fails to load or to discover is a note, never an exception.

Importing this module is cheap: the built-in kinds import their modules (and NVML, amdsmi,
psutil) only when their `discover` runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Optional, Union

from ..errors import ConfigError
from .base import COUNTER, INCLUDED_IN, MODELED, NODE, SAMPLED, Discovery, Sensor

ENTRY_POINT_GROUP = "energy_tracker.sensors"
# Components measured whole by one source: a second source would count them twice.
EXCLUSIVE = ("cpu", "ram")
METHODS = (COUNTER, SAMPLED, MODELED)
DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
DEFAULT_HWMON_ROOT = "/sys/class/hwmon"
ENV_HWMON_ROOT = "ENERGY_TRACKER_HWMON_ROOT"

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Options:
    """What discovery was asked for (the tracker's options), passed to every kind."""

    gpus: Optional[Sequence[Union[int, str]]] = None
    cpu: bool = True
    ram: bool = True
    node: bool = True
    cpu_tdp_w: Optional[float] = None
    cpu_scope: str = "machine"   # whose CPU time the models bill (cpu_scope.py)
    powercap_root: PathLike = DEFAULT_POWERCAP_ROOT
    hwmon_root: Optional[PathLike] = None   # None: ENERGY_TRACKER_HWMON_ROOT, else /sys/...
    counter_interval_s: float = 1.0
    env: Optional[Mapping[str, str]] = None        # None: os.environ
    # components already measured by kinds discovered earlier (cpu, ram: skip them)
    provided: frozenset[str] = frozenset()

    def wants(self, component: str) -> bool:
        """Did the user leave this component on (cpu=, ram=, node=)?"""
        return bool({"cpu": self.cpu, "ram": self.ram, NODE: self.node}.get(component, True))

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self.env is None else self.env

    @property
    def hwmon(self) -> PathLike:
        """The hwmon tree to read: `hwmon_root`, else $ENERGY_TRACKER_HWMON_ROOT (a host's
        /sys mounted elsewhere in a container, say), else /sys/class/hwmon."""
        if self.hwmon_root is not None:
            return self.hwmon_root
        return self.environ.get(ENV_HWMON_ROOT) or DEFAULT_HWMON_ROOT


@dataclass(frozen=True)
class SensorKind:
    """One kind of sensor: how its devices are found and what they read.

    `discover(options)` returns a `Discovery` (sensors and notes for the user); it raises
    `ConfigError` only for a bad explicit option. `order` sets discovery order (lower first:
    the first kind to measure "cpu" or "ram" is the one used). `in_node`: its devices are
    inside this machine, so a whole-node meter includes them.
    """

    name: str
    components: tuple[str, ...]
    discover: Callable[[Options], Discovery]
    order: int = 100
    reads: str = ""                          # what it reads, in words
    methods: tuple[str, ...] = ()            # method labels its sensors can carry
    cost_per_read_s: Optional[float] = None  # typical cost of its most expensive read
    cost_note: str = ""                      # where that figure comes from
    extra: Optional[str] = None              # `pip install trainjoule[extra]`
    in_node: bool = True
    source: str = "built-in"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["discover"]
        d["components"] = list(self.components)
        d["methods"] = list(self.methods)
        return d


# -- built-in kinds (each imports its module only when it runs) ---------------------------------
def _nvidia(o: Options) -> Discovery:
    from .nvidia import discover_gpus
    return discover_gpus(o.gpus, env=dict(o.environ),
                         counter_interval_s=o.counter_interval_s)


def _amd(o: Options) -> Discovery:
    from .amd import discover_amd_gpus
    return discover_amd_gpus(o.gpus, env=o.environ, counter_interval_s=o.counter_interval_s)


def _hwmon(o: Options) -> Discovery:
    from .hwmon import discover_hwmon
    return discover_hwmon(root=o.hwmon, node=o.node, cpu=o.cpu and "cpu" not in o.provided,
                          ram=o.ram, counter_interval_s=o.counter_interval_s,
                          cpu_tdp_w=o.cpu_tdp_w)


def _cpu_ram(o: Options) -> Discovery:
    cpu = o.cpu and "cpu" not in o.provided
    ram = o.ram and "ram" not in o.provided
    if not (cpu or ram):
        return Discovery([], [])
    from .cpuram import discover_cpu_ram
    return discover_cpu_ram(cpu_tdp_w=o.cpu_tdp_w, powercap_root=o.powercap_root, cpu=cpu,
                            ram=ram, cpu_scope=o.cpu_scope, env=o.environ)


BUILTIN: tuple[SensorKind, ...] = (
    SensorKind("nvidia", ("gpu",), _nvidia, order=10,
               reads="NVML total-energy counter (Volta+), power (instant field or "
                     "nvmlDeviceGetPowerUsage), utilisation",
               methods=(COUNTER, SAMPLED), cost_per_read_s=3.9e-3,
               cost_note="energy counter read on an H100 (driver 580); power reads 2-35 µs"),
    SensorKind("amd", ("gpu",), _amd, order=20,
               reads="amdsmi energy accumulator x counter_resolution (MI200/MI300), else "
                     "socket power; gfx activity",
               methods=(COUNTER, SAMPLED), extra="amd",
               cost_note="not measured here (no AMD GPU on this project's machines); each "
                         "read parses the driver's gpu_metrics table"),
    SensorKind("hwmon", (NODE, "cpu", "ram"), _hwmon, order=30,
               reads="hwmon power*_average (ACPI power meter, Grace) in µW, energy*_input "
                     "(amd_energy) in µJ",
               methods=(COUNTER, SAMPLED),
               cost_note="timed at discovery, per device (details.read_s): a sysfs read, or "
                         "an ACPI method that may ask the BMC (milliseconds)"),
    SensorKind("cpu-ram", ("cpu", "ram"), _cpu_ram, order=40,
               reads="RAPL energy_uj (powercap) per package and DRAM, else the psutil CPU "
                     "and RAM power models",
               methods=(COUNTER, MODELED), cost_per_read_s=1e-6,
               cost_note="RAPL pread on an open descriptor; the models poll psutil at 1 Hz"),
)


# -- plugins ------------------------------------------------------------------------------------
def _may_have_plugins(path: Optional[Sequence[str]] = None) -> bool:
    """False only when no distribution on `path` (default sys.path) can declare a sensor
    kind: no *.dist-info / *.egg-info directory there has an entry_points.txt naming the
    group. Importing importlib.metadata and listing every distribution's entry points takes
    ~35 ms; this scan of the same directories ~2 ms, so a machine without plugins pays that
    only. Anything it cannot judge (a zip archive on the path) answers True: the full
    listing decides."""
    import sys
    group = ENTRY_POINT_GROUP.encode()
    for entry in sys.path if path is None else path:
        try:
            it = os.scandir(entry or ".")
        except NotADirectoryError:
            return True      # a zip archive can hold distributions
        except OSError:
            continue         # absent, or a path hook's token (editable installs)
        with it:
            for d in it:
                if not d.name.endswith((".dist-info", ".egg-info")):
                    continue
                try:
                    with open(os.path.join(d.path, "entry_points.txt"), "rb") as f:
                        if group in f.read():
                            return True
                except OSError:
                    continue
    return False


def plugin_kinds(notes: list[str]) -> list[SensorKind]:
    """Kinds registered in the entry-point group; a broken one is a note."""
    if not _may_have_plugins():
        return []
    try:
        from importlib.metadata import entry_points
        try:
            eps = list(entry_points(group=ENTRY_POINT_GROUP))
        except TypeError:   # Python 3.9: a dict of groups
            eps = list(entry_points().get(ENTRY_POINT_GROUP, ()))  # type: ignore[attr-defined, unused-ignore]
    except Exception as e:
        notes.append(f"sensor plugins not loaded: listing entry points failed: {_err(e)}")
        return []
    out: list[SensorKind] = []
    for ep in sorted(eps, key=lambda e: e.name):
        where = f"entry point {ep.name!r} ({ep.value})"
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, SensorKind):
                obj = obj()
            kinds = [obj] if isinstance(obj, SensorKind) else list(obj)
            bad = [k for k in kinds if not isinstance(k, SensorKind)]
            if bad or not kinds:
                raise TypeError(f"it gives {bad[0] if bad else 'nothing'!r}, not a SensorKind "
                                "(tracker.sensors.registry.SensorKind)")
        except Exception as e:
            notes.append(f"sensor plugin {where} not used: {_err(e)}")
            continue
        out += [replace(k, source=where) for k in kinds]
    return out


def kinds(notes: Optional[list[str]] = None) -> list[SensorKind]:
    """The built-in kinds and the plugins', in discovery order. A plugin named like a kind
    already registered is left out (with a note)."""
    notes = [] if notes is None else notes
    out = list(BUILTIN)
    for k in plugin_kinds(notes):
        if any(k.name == o.name for o in out):
            notes.append(f"sensor plugin {k.source} not used: a sensor kind named {k.name!r} "
                         "is already registered")
            continue
        out.append(k)
    return sorted(out, key=lambda k: (k.order, k.name))


# -- discovery ----------------------------------------------------------------------------------
@dataclass
class KindReport:
    """What one kind found (for `energy-tracker devices`)."""

    kind: SensorKind
    devices: list[str] = field(default_factory=list)
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.kind.to_dict(), "found": list(self.devices),
                **({"error": self.error} if self.error else {})}


def discover(options: Optional[Options] = None, *, kinds_: Optional[Sequence[SensorKind]] = None,
             report: Optional[list[KindReport]] = None) -> Discovery:
    """Every kind's sensors for this machine, in order, with the notes to tell the user.

    Raises ConfigError only for a bad explicit option of a built-in kind (an unknown `gpus=`
    entry, a bad `cpu_tdp_w`); nothing a plugin does raises.
    """
    o = options or Options()
    notes: list[str] = []
    todo = list(kinds_) if kinds_ is not None else kinds(notes)
    sensors: list[Sensor] = []
    kind_of: dict[int, SensorKind] = {}
    provided: set[str] = set()
    gpu_errors: list[ConfigError] = []
    for kind in todo:
        rep = KindReport(kind)
        if report is not None:
            report.append(rep)
        try:
            found = kind.discover(replace(o, provided=frozenset(provided)))
            if not isinstance(found, Discovery):
                raise TypeError(f"discover() returned {type(found).__name__}, not a Discovery")
        except ConfigError as e:
            if kind.source != "built-in":
                rep.error = str(e)
                notes.append(f"sensor kind {kind.name!r} ({kind.source}) not used: {e}")
                continue
            if o.gpus is not None and "gpu" in kind.components:
                rep.error = str(e)
                gpu_errors.append(e)   # another GPU kind may know these GPUs
                continue
            raise
        except Exception as e:
            rep.error = _err(e)
            notes.append(f"sensor kind {kind.name!r} ({kind.source}) failed while looking for "
                         f"devices: {_err(e)}; its devices are not measured")
            continue
        kept: list[Sensor] = []
        for s in found.sensors:
            problem = _problem(s, kind)
            if problem is None and not o.wants(s.component):
                problem = ""     # the user turned this component off: silently dropped
            elif problem is None and s.component in EXCLUSIVE and s.component in provided:
                problem = (f"{s.component} is already measured by another sensor (it would "
                           "count twice)")
            if problem is None:
                name = _unique_name(s, kind, {x.name for x in sensors + kept})
                if name is None or (name != s.name and not _set_info(s, name=name)):
                    problem = f"its name {s.name!r} is taken"
            if problem is not None:
                if problem:
                    notes.append(f"{kind.name} sensor {_name(s)!r} not used: {problem}")
                _close(s)
                continue
            kept.append(s)
            kind_of[id(s)] = kind
        for s in kept:
            provided.add(s.component)
            provided.update(c for c in (s.info.details or {}).get("covers") or () if
                            isinstance(c, str))
        rep.devices = [s.name for s in kept]
        sensors += kept
        notes += [n for n in found.notes if isinstance(n, str)]
    if gpu_errors:
        if not any(s.component == "gpu" for s in sensors):
            for s in sensors:
                _close(s)
            raise gpu_errors[0]
        notes += [f"gpus=: {e} (the GPUs it names are measured by another GPU kind)"
                  for e in gpu_errors]
    notes += _include_in_node(sensors, kind_of)
    for comp in ("cpu", "ram"):
        if not o.wants(comp):
            notes.append(f"{comp} not measured (disabled by the user)")
    return Discovery(sensors, notes)


def _include_in_node(sensors: list[Sensor], kind_of: dict[int, SensorKind]) -> list[str]:
    """Mark every in-node device as a part of the whole-node meter(s); say so once."""
    nodes = [s for s in sensors if s.component == NODE]
    if not nodes:
        return []
    parts = [s for s in sensors if s.component != NODE
             and getattr(kind_of.get(id(s)), "in_node", True)]
    for s in parts:
        _set_info(s, details={**(s.info.details or {}), INCLUDED_IN: NODE})
    comps = list(dict.fromkeys(s.component for s in parts))
    meters = ", ".join(s.name for s in nodes)
    if not comps:
        return [f"whole-node meter ({meters}): the IT total is its energy."]
    return [f"whole-node meter ({meters}): the IT total is its energy; "
            f"{', '.join(comps)} {'is' if len(comps) == 1 else 'are'} measured too and shown as "
            "part of it (included in node), not added to it."]


def _problem(s: Any, kind: SensorKind) -> Optional[str]:
    """Why a sensor a kind returned cannot be used (None: it can)."""
    if not isinstance(s, Sensor):
        return f"it is a {type(s).__name__}, not a tracker.sensors.base.Sensor"
    info = getattr(s, "info", None)
    name, comp, method = (getattr(info, a, None) for a in ("name", "component", "method"))
    if not (isinstance(name, str) and name.strip()):
        return "it has no name (info.name)"
    if not (isinstance(comp, str) and comp.strip() and comp.replace("-", "").replace(
            "_", "").isalnum() and comp == comp.lower()):
        return f"its component {comp!r} is not a lower-case word"
    if kind.source != "built-in" and comp not in kind.components:
        return f"its component {comp!r} is not one its kind declares ({kind.components})"
    if method not in METHODS:
        return f"its method {method!r} is not one of {', '.join(METHODS)}"
    if not (s.has_counter or s.has_power):
        return "it reads neither energy nor power"
    if not isinstance(getattr(info, "details", None), dict):
        return "its info.details is not a dict"
    return None


def _unique_name(s: Sensor, kind: SensorKind, taken: set[str]) -> Optional[str]:
    if s.name not in taken:
        return s.name
    alt = f"{kind.name}-{s.name}"
    return alt if alt not in taken else None


def _set_info(s: Sensor, **changes: Any) -> bool:
    """Replace fields of a sensor's info; False when the sensor does not allow it."""
    try:
        s.info = replace(s.info, **changes)
        return True
    except (AttributeError, TypeError):   # a plugin's read-only info
        if set(changes) == {"details"}:
            s.info.details.update(changes["details"])
            return True
        return False


def _name(s: Any) -> str:
    return str(getattr(getattr(s, "info", None), "name", None) or type(s).__name__)


def _close(s: Any) -> None:
    try:
        s.close()
    except Exception:
        pass


def _err(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"


__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "KindReport", "Options", "SensorKind", "discover",
           "kinds", "plugin_kinds"]
