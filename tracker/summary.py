"""Turning energy curves and windows into the run's summary: plain dataclasses with units.

Used live (the tracker) and after a crash (`report` rebuilding from samples.jsonl), so both
paths give the same numbers. A device with no successful reading has energy None, never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from .accounting.advice import Finding
from .accounting.breakdown import IdleAccount, Share, idle_accounts, shares
from .accounting.parts import DictPart, as_part, parts_of
from .accounting.price import Cost
from .accounting.steps import Steps
from .carbon.citation import citation
from .carbon.gridfactor import Grid
from .job.part import JobPart
from .sampler import DeviceState
from .sensors.base import NODE, counted
from .units import J_PER_KWH, energy_text
from .windows import StepTable, Window

__all__ = ["COMPONENTS", "J_PER_KWH", "ComponentEnergy", "DeviceEnergy", "StepTable", "Summary",
           "Window", "WindowEnergy"]

# The preferred display order of components. The set is open: any other component a sensor
# reports (a plugin's) follows these, in the order its devices were found (`ordered`).
COMPONENTS = ("gpu", "cpu", "ram", "node")


@dataclass(frozen=True)
class DeviceEnergy:
    """Energy of one measured device over the run."""

    name: str                          # "gpu0", "cpu-pkg0", "cpu", "ram"
    component: str                     # "gpu" | "cpu" | "ram"
    method: str                        # "counter" | "sampled" | "modeled"
    description: str
    energy_j: Optional[float]          # None: nothing was measured (never a silent 0)
    mean_power_w: Optional[float]
    peak_power_w: Optional[float]
    status: str                        # "ok" | "degraded" | "unavailable"
    errors: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    node: Optional[str] = None         # in a job: the node (machine) it belongs to
    start_s: Optional[float] = None    # run time of its first and last reading: a device can
    end_s: Optional[float] = None      # start late (a job's late claim) or be lost early
    uncertainty_j: Optional[float] = None   # ± bound from what was read (uncertainty.py)

    @property
    def energy_kwh(self) -> Optional[float]:
        return None if self.energy_j is None else self.energy_j / J_PER_KWH

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["energy_kwh"] = self.energy_kwh
        d["errors"] = list(self.errors)
        if self.node is None:
            del d["node"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceEnergy:
        return cls(**_known(cls, d, errors=tuple(d.get("errors") or ())))


@dataclass(frozen=True)
class ComponentEnergy:
    """Sum over the devices of one component (all GPUs, all CPU packages, RAM)."""

    component: str
    energy_j: Optional[float]
    mean_power_w: Optional[float]
    peak_power_w: Optional[float]      # sum of the devices' peaks (an upper bound)
    method: str                        # one method, or "mixed: counter+sampled"
    devices: tuple[str, ...]
    status: str

    @property
    def energy_kwh(self) -> Optional[float]:
        return None if self.energy_j is None else self.energy_j / J_PER_KWH

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["energy_kwh"] = self.energy_kwh
        d["devices"] = list(self.devices)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComponentEnergy:
        return cls(**_known(cls, d, devices=tuple(d.get("devices") or ())))


@dataclass(frozen=True)
class WindowEnergy:
    """Energy of one window; for short windows it is interpolated on E(t) (see README)."""

    id: int
    name: str
    kind: str
    parent: Optional[int]
    start_s: float
    end_s: Optional[float]
    duration_s: Optional[float]
    energy_j: Optional[float]
    by_component_j: dict[str, float]
    emissions_g: Optional[float]
    attrs: dict[str, Any]
    method_by_component: dict[str, str] = field(default_factory=dict)
    cost: Optional[float] = None       # facility energy x price_per_kwh, when a price is given
    # ± bound (J) on the measured part of energy_j (uncertainty.py); None: nothing measured
    uncertainty_j: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.cost is None:
            del d["cost"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowEnergy:
        return cls(**_known(cls, d))


@dataclass(frozen=True, eq=False)
class Sampling(DictPart):
    """A summary's `sampling` part: how the run read its sensors (manifest.sampling_record).
    Empty (no key) for a summary that does not say, such as one rebuilt from an old run.json."""

    rate_hz: Optional[float] = None           # the sampler's tick rate
    rate_source: Optional[str] = None         # "default" or "user"
    counter_interval_s: Optional[float] = None   # energy counters' read cadence (None: auto)
    counter_reads: Optional[str] = None       # when counters are read besides the schedule
    model_interval_s: Optional[float] = None  # modeled components' cadence

    @classmethod
    def empty(cls) -> Sampling:
        return cls(keys_=())


@dataclass(frozen=True, eq=False)
class CarbonDetail(DictPart):
    """A summary's `carbon` part: how its emissions were accounted (carbon/accounting.py's
    Emissions, and the live provider's status), or for a job the grid factor of each node.
    Empty when nothing was measured (no emissions)."""

    emissions_g: Optional[float] = None
    energy_j: Optional[float] = None                  # facility energy accounted (J)
    gco2_per_kwh_effective: Optional[float] = None    # energy-weighted intensity
    gco2_per_kwh_time_weighted: Optional[float] = None
    parts: Optional[list[dict[str, Any]]] = None      # one per intensity span
    fallback_used: Optional[bool] = None              # a live provider fell back to the table
    notes: Optional[list[str]] = None
    emissions_kg: Optional[float] = None
    live: Optional[dict[str, Any]] = None             # the live provider's status
    grids: Optional[list[dict[str, Any]]] = None      # a job: {grid, nodes} per factor used

    @classmethod
    def empty(cls) -> CarbonDetail:
        return cls(keys_=())


@dataclass(frozen=True)
class Summary:
    """What a run consumed and emitted. Energies in J and kWh, power in W, CO2e in kg/g."""

    run_id: str
    name: str
    status: str                        # "running" | "finished" | "failed" | "interrupted"
    started_utc: str
    ended_utc: Optional[str]
    duration_s: float
    devices: tuple[DeviceEnergy, ...]
    components: dict[str, ComponentEnergy]
    energy_j: Optional[float]          # IT energy: sum of measured components
    pue: float
    pue_source: str                    # "default: IT energy only; pass pue= ..." or "user"
    facility_energy_j: Optional[float]
    emissions_kg: Optional[float]
    emissions_rate_kg_per_s: Optional[float]
    gco2_per_kwh: Optional[float]      # energy-weighted intensity actually applied
    grid: Grid                         # GridFactor.to_dict(): value, region, source, year ...
    carbon: CarbonDetail               # accounting detail: parts, live provider status
    windows: tuple[WindowEnergy, ...]
    steps: Steps                       # count, energy in steps, groups, J/sample, J/token
    notes: tuple[str, ...]
    degraded: tuple[str, ...]
    run_dir: Optional[str] = None
    sampling: Sampling = field(default_factory=Sampling.empty)  # rate, counter cadence
    job: Optional[JobPart] = None      # distributed job: id, world size, nodes, missing
    # Where the energy went (accounting/breakdown.py): part -> energy_j, share, seconds, method;
    # idle GPU energy per device; findings with their numbers; the electricity cost.
    breakdown: dict[str, Share] = field(default_factory=dict)
    idle: dict[str, IdleAccount] = field(default_factory=dict)
    advice: tuple[Finding, ...] = ()
    cost: Optional[Cost] = None
    report_html: Optional[str] = None   # the run's report.html, when one was written
    # ± bound (J) on the measured part of energy_j (counter and sampled devices;
    # uncertainty.py says how it is computed); None when nothing measured has a bound
    energy_uncertainty_j: Optional[float] = None

    def __post_init__(self) -> None:
        # The typed parts, also when given as the dicts they are written as (a Summary made
        # by hand, or by code that predates them).
        typed: dict[str, Any] = {
            "sampling": as_part(Sampling, self.sampling), "steps": as_part(Steps, self.steps),
            "carbon": as_part(CarbonDetail, self.carbon), "grid": as_part(Grid, self.grid),
            "breakdown": shares(self.breakdown), "idle": idle_accounts(self.idle),
            "advice": tuple(parts_of(Finding, self.advice))}
        if self.cost is not None:
            typed["cost"] = as_part(Cost, self.cost)
        if self.job is not None:
            typed["job"] = as_part(JobPart, self.job)
        for name, value in typed.items():
            object.__setattr__(self, name, value)

    @property
    def energy_kwh(self) -> Optional[float]:
        return None if self.energy_j is None else self.energy_j / J_PER_KWH

    @property
    def facility_energy_kwh(self) -> Optional[float]:
        return None if self.facility_energy_j is None else self.facility_energy_j / J_PER_KWH

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "run_id": self.run_id, "name": self.name, "status": self.status,
            "started_utc": self.started_utc, "ended_utc": self.ended_utc,
            "duration_s": self.duration_s,
            "energy_j": self.energy_j, "energy_kwh": self.energy_kwh,
            "pue": self.pue, "pue_source": self.pue_source,
            "facility_energy_j": self.facility_energy_j,
            "facility_energy_kwh": self.facility_energy_kwh,
            "emissions_kg": self.emissions_kg,
            "emissions_rate_kg_per_s": self.emissions_rate_kg_per_s,
            "gco2_per_kwh": self.gco2_per_kwh,
            "grid": self.grid.to_dict(), "carbon": self.carbon.to_dict(),
            "components": {k: v.to_dict() for k, v in self.components.items()},
            "devices": [d.to_dict() for d in self.devices],
            "windows": [w.to_dict() for w in self.windows],
            "steps": self.steps.to_dict(),
            "sampling": self.sampling.to_dict(),
            "notes": list(self.notes), "degraded": list(self.degraded),
            "run_dir": self.run_dir,
            "breakdown": {k: v.to_dict() for k, v in self.breakdown.items()},
            "idle": {k: v.to_dict() for k, v in self.idle.items()},
            "advice": [f.to_dict() for f in self.advice],
            **({"cost": self.cost.to_dict()} if self.cost is not None else {}),
            **({"job": self.job.to_dict()} if self.job is not None else {}),
            **({"report_html": self.report_html} if self.report_html else {}),
            **({"energy_uncertainty_j": self.energy_uncertainty_j}
               if self.energy_uncertainty_j is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Summary:
        """A saved summary.json read back (a report needs no replay of the samples). Its types
        are checked first (check_summary): a damaged one is a one-line ConfigError."""
        try:
            check_summary(d, complete=True)
        except ValueError as e:
            from .errors import ConfigError
            raise ConfigError(f"summary.json is damaged ({e}); `energy-tracker report "
                              "--rebuild` rebuilds it from the logs") from None
        return cls(**_known(
            cls, d,
            devices=tuple(DeviceEnergy.from_dict(x) for x in d.get("devices") or ()),
            components={k: ComponentEnergy.from_dict(v)
                        for k, v in (d.get("components") or {}).items()},
            windows=tuple(WindowEnergy.from_dict(w) for w in d.get("windows") or ()),
            notes=tuple(d.get("notes") or ()), degraded=tuple(d.get("degraded") or ()),
            steps=d.get("steps") or {}, grid=d.get("grid") or {}, carbon=d.get("carbon") or {},
            sampling=d.get("sampling") or {}, breakdown=d.get("breakdown") or {},
            idle=d.get("idle") or {}, advice=tuple(d.get("advice") or ())))

    def format(self) -> str:
        """Human-readable summary, every number with its method and the grid factor's source."""
        job = self.job
        head = (f"job {job.job_id!r} ({self.name}, {job.world_size} ranks on "
                f"{len(job.nodes or ())} node(s))" if job else f"run {self.name!r} ({self.run_id})")
        lines = [f"energy-tracker: {head} {self.status}, {self.duration_s:.1f} s"]
        scope = _scopes(self.devices)
        for c in self.components.values():
            if c.energy_j is None:
                lines.append(f"  {c.component:<4} not measured ({c.status})")
                continue
            peak = f", peak {c.peak_power_w:.1f} W" if c.peak_power_w is not None else ""
            lines.append(f"  {c.component:<4} {energy_text(c.energy_j):>9}"
                         f"  mean {c.mean_power_w or 0:.1f} W{peak}  [{c.method}]"
                         + ("" if c.status == "ok" else f" ({c.status})")
                         + scope.get(c.component, ""))
        if len(self.devices) <= 16:
            for d in self.devices:
                if d.component == "gpu" or len(self.devices) <= 6 or d.node is not None:
                    e = "not measured" if d.energy_j is None else energy_text(d.energy_j)
                    where = f"{d.node}/" if d.node is not None else ""
                    lines.append(f"    {where}{d.name}: {e} [{d.method}] {d.description}")
        if self.energy_j is None:
            lines.append("  total: nothing could be measured")
        else:
            facility = self.facility_energy_j
            lines.append(f"  total (IT) {energy_text(self.energy_j)}"
                         f"{_pm(self.energy_uncertainty_j)}; PUE {_pue(self.pue)} "
                         f"({self.pue_source}) -> facility "
                         f"{'n/a' if facility is None else energy_text(facility)}")
        if job:
            lines += _format_job(job)
        for w in self.windows[:20]:
            if w.energy_j is not None:
                spread = w.attrs.get("edge_spread_s")
                n = w.attrs.get("ranks")
                ranks = ("" if not isinstance(spread, dict) else
                         f" ({n} ranks, edges within {max(spread.values()):.3f} s)" if n != 1
                         else " (one rank)")
                lines.append(f"  window {w.name!r} [{w.kind}]: {energy_text(w.energy_j)}"
                             f"{_pm(w.uncertainty_j, w.energy_j)} over "
                             f"{w.duration_s or 0:.2f} s{ranks}")
        if len(self.windows) > 20:
            lines.append(f"  ... {len(self.windows) - 20} more windows in summary.json")
        if self.steps.get("groups") or self.steps.get("energy_j_in_steps") is not None:
            st = self.steps
            per = "".join(f", {st[k]:.4g} J/{k[6:]}" for k in ("j_per_sample", "j_per_token")
                          if k in st)
            groups = (f" (reported in groups of {st['group_size']}; per-step energies are "
                      "interpolated)" if st.get("group_size") else "")
            lines.append(f"  steps: {st['count']} steps, {energy_text(st['energy_j_in_steps'])}"
                         f" in steps{per}{groups}")
        shown = {k: p for k, p in self.breakdown.items()
                 if p.share is not None and p.energy_j > 0}
        if set(shown) == {"other"}:   # no step or window: "other 100 %" says nothing
            lines.append(f"  where it went: {NO_BREAKDOWN}")
        elif shown:
            lines.append("  where it went: " + ", ".join(
                f"{k.replace('_', ' ')} {p.share:.1%}" for k, p in shown.items()
                if p.share is not None))
        for name, v in self.idle.items():
            if v.time_share is not None and v.energy_j is not None:
                lines.append(f"  {name} idle {v.time_share:.0%} of the time, "
                             f"{energy_text(v.energy_j)} [{v.method.split(':')[0]}]")
        g = self.grid
        if self.emissions_kg is not None and g.get("region_code") == "mixed":
            lines.append(f"  emissions {self.emissions_kg * 1000:.3f} g CO2e at "
                         f"{self.gco2_per_kwh:.1f} gCO2e/kWh (energy-weighted; each node at "
                         "its own grid factor):")
            for e in self.carbon.get("grids") or ():
                f = e.get("grid") or {}
                lines.append(f"    {f.get('region_code')}: {f.get('gco2_per_kwh', 0):.1f} "
                             f"gCO2e/kWh ({f.get('region_name')}, "
                             f"{citation(f.get('source'), f.get('year'))}) on "
                             f"{', '.join(e.get('nodes', []))}")
        elif self.emissions_kg is not None:
            lines.append(f"  emissions {self.emissions_kg * 1000:.3f} g CO2e at "
                         f"{self.gco2_per_kwh:.1f} gCO2e/kWh ({g.get('region_code')}: "
                         f"{g.get('region_name')}; "
                         f"{citation(g.get('source'), g.get('year'))})")
        if self.cost is not None and self.cost.get("amount") is None:
            lines.append(f"  cost: not summed ({self.cost.get('basis')})")
        elif self.cost is not None:
            cost = self.cost
            lines.append(f"  cost {cost['amount']:.4g} {cost['currency']} "
                         f"({cost['price_per_kwh']:g} {cost['currency']}/kWh x {cost['basis']})")
        for f in self.advice:
            lines.append(f"  finding: {f.finding}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        for n in self.degraded:
            lines.append(f"  degraded: {n}")
        if self.run_dir:
            lines.append(f"  logs: {self.run_dir}")
        if self.report_html:
            lines.append(f"  report: {self.report_html}")
        return "\n".join(lines)


# What a run with nothing but "other" in its breakdown prints instead of "other 100.0%".
NO_BREAKDOWN = ("no steps or windows were recorded, so there is no breakdown; wrap the loop "
                "(`for batch in run.steps(loader)`, or `with run.step():` per step), mark "
                "phases with `run.window(\"eval\")`, or add the Hugging Face / Lightning "
                "callback")


def _pm(bound: Optional[float], of: Optional[float] = None) -> str:
    """" ± 1.2 J (0.3 %)" for a bound on a measured energy; "" when there is none."""
    if bound is None:
        return ""
    share = f" ({bound / of:.1%})" if of else ""
    return f" ± {energy_text(bound)}{share}"


def _pue(pue: float) -> str:
    """"1.0", "1.2", "1.25": one decimal at least, so a PUE never reads as a count."""
    return f"{pue:.1f}" if round(pue, 1) == pue else f"{pue:g}"


def _scopes(devices: Sequence[DeviceEnergy]) -> dict[str, str]:
    """What a whole-node meter includes, for the text: " (whole node: ...)" on its line,
    " (part of node)" on the components measured inside it."""
    if not any(d.component == NODE for d in devices):
        return {}
    parts = ordered(d.component for d in devices if not counted(d.details))
    out = {c: f" (part of {NODE}: included in its total)" for c in parts
           if all(not counted(d.details) for d in devices if d.component == c)}
    out[NODE] = (" (whole-node meter: the IT total" + (f"; includes {', '.join(parts)})"
                                                       if parts else ")"))
    return out


def _format_job(job: JobPart) -> list[str]:
    """The job part of a summary's text: nodes, attempts, what is missing."""
    lines = [f"  job id {job.job_id} ({job.source}); {len(job.attempts or [])} attempt(s)"]
    nodes = job.nodes or []
    for n in nodes[:32]:
        e = "n/a" if n.energy_j is None else energy_text(n.energy_j)
        ranks = n.ranks or []
        rtext = (f"ranks {ranks[0]}-{ranks[-1]}" if len(ranks) > 3 and
                 ranks == list(range(ranks[0], ranks[-1] + 1))
                 else "ranks " + ",".join(str(r) for r in ranks)) if ranks else "no ranks"
        lines.append(f"    node {n.node}: {e}, {rtext}, {len(n.devices or [])} "
                     f"devices, grid {n.grid_region}")
    if len(nodes) > 32:
        lines.append(f"    ... {len(nodes) - 32} more nodes in summary.json")
    for m in job.missing or []:
        lines.append(f"  missing: {m.what}: {m.reason}")
    return lines


def _known(cls: Any, d: dict[str, Any], **override: Any) -> dict[str, Any]:
    """The fields of dataclass `cls` found in `d` (derived keys such as energy_kwh dropped)."""
    from dataclasses import fields
    names = {f.name for f in fields(cls)}
    out = {k: v for k, v in d.items() if k in names}
    out.update(override)
    return out


def device_energy(dev: DeviceState, t0: float, t1: float, interval_s: float = 0.1
                  ) -> DeviceEnergy:
    from .uncertainty import device_window_j
    info = dev.sensor.info
    curve = dev.curve
    bound = None
    start, end = curve.start, curve.end
    if start is None or end is None:    # an empty curve
        energy = mean = None
        status = "unavailable"
    else:
        energy = curve.energy_between(t0, t1)
        span = (min(t1, end or t1) - max(t0, start or t0))
        mean = energy / span if span > 0 else None
        status = "degraded" if dev.degraded else "ok"
        # the run's edges (start and stop) always have a counter read of their own
        bound = device_window_j(dev, max(t0, start), min(t1, end), anchored=True,
                                interval_s=interval_s)
    return DeviceEnergy(name=info.name, component=info.component, method=info.method,
                        description=info.description, energy_j=energy, mean_power_w=mean,
                        peak_power_w=None if curve.empty else curve.peak_w, status=status,
                        errors=tuple(dev.errors), details=dict(info.details),
                        start_s=curve.start, end_s=curve.end, uncertainty_j=bound)


def combine(component: str, devs: Sequence[DeviceEnergy], duration_s: float) -> ComponentEnergy:
    measured = [d for d in devs if d.energy_j is not None]
    methods = {d.method for d in measured} or {d.method for d in devs}
    energy = sum(d.energy_j for d in measured) if measured else None  # type: ignore[misc]
    peaks = [d.peak_power_w for d in measured if d.peak_power_w is not None]
    status = ("unavailable" if not measured
              else "degraded" if any(d.status != "ok" for d in devs) else "ok")
    return ComponentEnergy(
        component=component, energy_j=energy,
        mean_power_w=(energy / duration_s if energy is not None and duration_s > 0 else None),
        peak_power_w=sum(peaks) if peaks else None,
        method=_one_method(methods),
        devices=tuple(d.name for d in devs), status=status)


def ordered(components: Iterable[str]) -> list[str]:
    """Components in display order: COMPONENTS first, then any other in the order given."""
    seen = list(dict.fromkeys(components))
    return [c for c in COMPONENTS if c in seen] + [c for c in seen if c not in COMPONENTS]


def window_energy(w: Window, devices: Sequence[DeviceState], t_now: float,
                  emissions_g: Optional[Callable[[float, float], float]],
                  interval_s: float = 0.1) -> WindowEnergy:
    from .uncertainty import window_j
    t1 = w.t_end if w.t_end is not None else t_now
    by: dict[str, float] = {}
    methods: dict[str, set[str]] = {}
    total: Optional[float] = None   # parts of a whole-node meter are in by_component_j only
    for d in devices:
        if not d.curve.empty:
            c = d.sensor.component
            e = d.curve.energy_between(w.t_start, t1)
            by[c] = by.get(c, 0.0) + e
            methods.setdefault(c, set()).add(d.sensor.method)
            if counted(d.sensor.info.details):
                total = (total or 0.0) + e
    energy = total if total is not None else (0.0 if by else None)
    return WindowEnergy(
        id=w.id, name=w.name, kind=w.kind, parent=w.parent, start_s=w.t_start, end_s=w.t_end,
        duration_s=t1 - w.t_start, energy_j=energy, by_component_j=by,
        emissions_g=(emissions_g(w.t_start, t1) if emissions_g and energy is not None else None),
        attrs=dict(w.attrs),
        method_by_component={c: _one_method(m) for c, m in methods.items()},
        # window edges but steps' have a counter read of their own (the sampler is woken)
        uncertainty_j=window_j(devices, w.t_start, t1, anchored=w.kind != "step",
                               interval_s=interval_s))


def _one_method(methods: set[str]) -> str:
    return next(iter(methods)) if len(methods) == 1 else "mixed: " + "+".join(sorted(methods))


def utc_iso(wall: float) -> str:
    """ISO 8601 UTC of a wall clock; "n/a" for one no calendar can show (a forged run.json's)."""
    try:
        return datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError, TypeError):
        return "n/a"


# -- reading a saved summary.json back (untrusted input) ------------------------------------------
# What each field of a summary must be where it is used (format(), the HTML report, a job's
# merge): "num" a finite number of plausible size (the reader already refused NaN, Infinity
# and |x| > untrusted.MAX_JSON_ABS), "int", "str", "bool", "dict", "list", "any"; a trailing
# "?" allows None. ("list", spec) / ("map", spec): a list / an object whose values each match
# spec; a dict: an object whose keys, when present, match (a key ending in "!" must be there;
# other keys are not checked). A missing key is what readers already handle (`.get`).
_Spec = Any
_DEVICE: dict[str, _Spec] = {
    "name!": "str", "component!": "str", "method!": "str", "description!": "str?",
    "energy_j!": "num?", "mean_power_w!": "num?", "peak_power_w!": "num?", "status!": "str",
    "errors": ("list?", "str"), "details": "dict?", "node": "str?", "start_s": "num?",
    "end_s": "num?", "uncertainty_j": "num?", "energy_kwh": "num?"}
_COMPONENT: dict[str, _Spec] = {
    "component!": "str", "energy_j!": "num?", "mean_power_w!": "num?",
    "peak_power_w!": "num?", "method!": "str", "devices!": ("list?", "str"), "status!": "str",
    "energy_kwh": "num?"}
_WINDOW: dict[str, _Spec] = {
    "id!": "int", "name!": "str", "kind!": "str", "parent!": "int?", "start_s!": "num",
    "end_s!": "num?", "duration_s!": "num?", "energy_j!": "num?",
    "by_component_j!": ("map?", "num"), "emissions_g!": "num?",
    "attrs!": {"edge_spread_s": ("map?", "num")},
    "method_by_component": ("map?", "str"), "cost": "num?", "uncertainty_j": "num?"}
_GROUP: dict[str, _Spec] = {k: "num?" for k in (
    "first_step", "last_step", "steps", "start_s", "end_s", "energy_j", "samples", "tokens",
    "j_per_step", "j_per_sample", "j_per_token", "uncertainty_j")}
_STEPS: dict[str, _Spec] = {
    "?": True, "count": "int?", "energy_j_in_steps": "num?", "group_size": "int?",
    "groups": ("list?", _GROUP), "j_per_sample": "num?", "j_per_token": "num?",
    "samples": "num?", "tokens": "num?"}
_PART: dict[str, _Spec] = {"energy_j!": "num", "share": "num?", "seconds": "num?",
                           "method": "str?"}
_IDLE: dict[str, _Spec] = {"energy_j": "num?", "seconds": "num?", "covered_s": "num?",
                           "share_of_device": "num?", "time_share": "num?", "method!": "str"}
_GRID: dict[str, _Spec] = {"?": True, "gco2_per_kwh": "num?", "region_code": "str?",
                           "region_name": "str?", "source": "str?", "year": "int?"}
_NODE: dict[str, _Spec] = {
    "node!": "str", "ranks": ("list?", "int"), "devices": "list?", "energy_j": "num?",
    "emissions_kg": "num?", "gco2_per_kwh": "num?", "members": ("list?", "dict")}
_JOB: dict[str, _Spec] = {
    "?": True, "job_id!": "str", "world_size!": "int?", "nodes!": ("list", _NODE),
    "started_wall": "num?",
    "attempts": ("list?", {"ranks": ("list?", "int"), "energy_j": "num?"}),
    "missing": ("list?", {"what": "str?", "reason": "str?"}),
    "gpu_energy_spread": ("map?", {"min_j": "num?", "median_j": "num?", "max_j": "num?"})}
_SUMMARY: dict[str, _Spec] = {
    "run_id": "str", "name": "str", "status": "str", "started_utc": "str",
    "ended_utc": "str?", "duration_s": "num", "energy_j": "num?", "energy_kwh": "num?",
    "pue": "num", "pue_source": "str", "facility_energy_j": "num?",
    "facility_energy_kwh": "num?", "emissions_kg": "num?", "emissions_rate_kg_per_s": "num?",
    "gco2_per_kwh": "num?", "grid": _GRID, "carbon": {"?": True, "grids": ("list?", {
        "grid": _GRID, "nodes": ("list?", "str")})},
    "components": ("map?", _COMPONENT), "devices": ("list?", _DEVICE),
    "windows": ("list?", _WINDOW), "steps": _STEPS, "notes": ("list?", "str"),
    "degraded": ("list?", "str"), "run_dir": "str?", "sampling": "dict?",
    "job": _JOB, "breakdown": ("map?", _PART), "idle": ("map?", _IDLE),
    "advice": ("list?", {"finding!": "str", "numbers": "dict?"}),
    "cost": {"?": True, "amount": "num?", "currency": "str?", "price_per_kwh": "num?",
             "basis": "str?", "cost": "num?"},
    "report_html": "str?", "energy_uncertainty_j": "num?"}
# Summaries report at most this long a run (s).
_MAX_SUMMARY_S = 10 * 365.25 * 86400.0


def _check(v: Any, spec: _Spec, where: str) -> None:
    """Raise ValueError naming the first field of `v` that does not match `spec`."""
    from .rundir.untrusted import number
    if isinstance(spec, dict):
        if v is None and spec.get("?"):
            return
        if not isinstance(v, dict):
            raise ValueError(f"{where} is {_kind(v)}, not an object")
        for k, sub in spec.items():
            if k == "?":
                continue
            key = k.rstrip("!")
            if key in v:
                _check(v[key], sub, f"{where}.{key}")
            elif k.endswith("!"):
                raise ValueError(f"{where} has no {key!r}")
        return
    if isinstance(spec, tuple):
        outer, item = spec
        if v is None and outer.endswith("?"):
            return
        if outer.startswith("list"):
            if not isinstance(v, list):
                raise ValueError(f"{where} is {_kind(v)}, not a list")
            for i, x in enumerate(v):
                _check(x, item, f"{where}[{i}]")
        else:
            if not isinstance(v, dict):
                raise ValueError(f"{where} is {_kind(v)}, not an object")
            for k, x in v.items():
                _check(x, item, f"{where}.{k}")
        return
    if v is None and spec.endswith("?"):
        return
    kind = spec.rstrip("?")
    ok = (kind == "any" or (kind == "num" and number(v))
          or (kind == "int" and v.__class__ is int and number(v, float(1 << 53)))
          or (kind == "str" and isinstance(v, str)) or (kind == "bool" and isinstance(v, bool))
          or (kind == "dict" and isinstance(v, dict)) or (kind == "list" and isinstance(v, list)))
    if not ok:
        raise ValueError(f"{where} is {_kind(v)}, not {'a number' if kind == 'num' else kind}")


def _kind(v: Any) -> str:
    return "null" if v is None else f"{type(v).__name__} {str(v)[:30]!r}"


def check_summary(d: Any, *, complete: bool = False) -> None:
    """A summary.json's contents as this version writes them, or ValueError saying which field
    is not (its type, or a time out of any plausible range). `complete`: every field
    Summary.from_dict needs must be there too (the HTML report reads what is there)."""
    _check(d, _SUMMARY, "summary")
    if complete:
        from dataclasses import MISSING, fields
        for f in fields(Summary):
            if f.default is MISSING and f.default_factory is MISSING and f.name not in d:
                raise ValueError(f"summary has no {f.name!r}")
    if "duration_s" in d and not 0 <= d["duration_s"] <= _MAX_SUMMARY_S:
        raise ValueError(f"summary.duration_s {d['duration_s']!r} is not a run's duration")
    for key in ("energy_j", "facility_energy_j", "emissions_kg", "pue"):
        if d.get(key) is not None and d[key] < 0:
            raise ValueError(f"summary.{key} {d[key]!r} is negative")
    for w in d.get("windows") or ():
        if not -_MAX_SUMMARY_S <= w["start_s"] <= _MAX_SUMMARY_S:
            raise ValueError(f"window {w['id']}'s start_s is not a run time")
        spread = (w.get("attrs") or {}).get("edge_spread_s")
        if isinstance(spread, dict) and not spread:
            raise ValueError(f"window {w['id']}'s edge_spread_s is empty")
    if complete:
        _check_printable(d)


def _check_printable(d: dict[str, Any]) -> None:
    """What Summary.format() prints of each part when that part is there."""
    from .rundir.untrusted import number
    st = d.get("steps") or {}
    if (st.get("groups") or st.get("energy_j_in_steps") is not None) and not (
            st.get("count").__class__ is int and number(st.get("energy_j_in_steps"))):
        raise ValueError("summary.steps has groups but no count and energy_j_in_steps")
    if d.get("energy_j") is not None and not number(d.get("facility_energy_j")):
        raise ValueError("summary.energy_j without a facility_energy_j")
    if d.get("emissions_kg") is not None and not number(d.get("gco2_per_kwh")):
        raise ValueError("summary.emissions_kg without a gco2_per_kwh")
    for name, v in (d.get("idle") or {}).items():
        if v.get("time_share") is not None and not number(v.get("energy_j")):
            raise ValueError(f"summary.idle.{name} has a time_share but no energy_j")
    cost = d.get("cost")
    if cost is not None and cost.get("amount") is not None and not (
            isinstance(cost.get("currency"), str) and number(cost.get("price_per_kwh"))
            and isinstance(cost.get("basis"), str)):
        raise ValueError("summary.cost has an amount but no currency, price or basis")


def read_summary(path: Any, *, complete: bool = False) -> Optional[dict[str, Any]]:
    """A saved summary.json, or None when it is missing or damaged: unreadable, larger than
    untrusted.MAX_JSON_BYTES, NaN/Infinity or huge numbers, or fields of the wrong type
    (check_summary; `complete`: every field there, as Summary.from_dict and a job's merge
    need). A caller then rebuilds it from the logs, as for a killed run."""
    from pathlib import Path

    from .rundir.runlog import read_json
    d = read_json(Path(path))
    if d is None:
        return None
    try:
        check_summary(d, complete=complete)
    except ValueError:
        return None
    return d


def summary_damage(path: Any) -> Optional[str]:
    """Why an existing summary.json cannot be used (None: it can, or there is none)."""
    from pathlib import Path

    from .rundir.untrusted import read_json_file
    try:
        d = read_json_file(Path(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return str(e)[:200]
    try:
        check_summary(d, complete=True)
    except ValueError as e:
        return str(e)[:200]
    return None
