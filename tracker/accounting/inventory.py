"""The monthly inventory for a carbon report: facility kWh, tCO2e (location-based) and GPU-hours
per calendar month (UTC) x project x grid region, over any set of output roots.

    inv = inventory([Path("energy-runs"), Path("/scratch/team-b/energy-runs")])
    inv.rows          # one InventoryRow per (month, project, region)
    inv.to_csv()      # the same as CSV (`energy-tracker inventory ROOT... --csv OUT`)

What is counted, and how:

- an *entry* is a run directory or a job directory (its member runs are counted inside the
  job, never again on their own, even when a member's directory is given as a root too; a
  run or job reached twice through two roots is counted once, by its id);
- a job is split by node: each node's energy and emissions go to the node's grid region;
- energy is the facility energy (IT energy x PUE) the run reported; emissions are the run's
  own, i.e. location-based: its energy times the grid-average factor of its region (the
  factor's source and year are listed per row), or the live intensity it recorded;
- GPU-hours are the GPU devices' measured spans (start to end of each), summed;
- a run that spans a month boundary is split by its energy timeline (cumulative energy read
  from its logs at the boundary: samples.jsonl and condensed timelines); when it has no usable
  timeline, all of it goes to the month it started in. Each row says which basis it used.
  Its emissions follow its energy (an annual factor), or, with live intensity, are the
  emissions of the intensity periods in each month (summary.carbon.parts); its GPU-hours
  follow the time.
- project: the `project` field of run.json / job.json when present, else the name of the
  output folder holding the run or job (one output folder per team, project or sweep is the
  usual layout); runs are found in a root and in plain folders below it (MAX_DEPTH levels).

Reads only: a live or killed run's summary is rebuilt in memory, never written back.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from ..rundir.names import JOB_MANIFEST, MANIFEST, SAMPLES, SUMMARY
from ..rundir.runlog import read_json, read_samples
from ..rundir.untrusted import number, wall_seconds
from ..units import J_PER_KWH

MAX_DEPTH = 3              # folders looked through below a root for runs and jobs
BASIS_ONE_MONTH = "within one month"
BASIS_TIMELINE = "split by energy timeline"
BASIS_START = "assigned to its start month (no energy timeline)"

CSV_COLUMNS = ["month", "project", "region", "facility_energy_kwh", "emissions_tco2e",
               "gpu_hours", "entries", "gco2_per_kwh_effective", "factor", "factor_source",
               "factor_year", "factor_licence", "split_basis"]


# -- what is found under the roots ----------------------------------------------------------------
@dataclass
class Entry:
    """One run or one job, counted once."""

    kind: str                      # "run" | "job"
    path: Path
    root: Path                     # the root it was found under
    summary: dict[str, Any]
    manifest: dict[str, Any]       # run.json, or job.json for a job
    rebuilt: bool = False          # summary rebuilt in memory (missing, running or damaged)
    members: list[Path] = field(default_factory=list)   # a job's member run directories
    error: Optional[str] = None    # unreadable: shown, counted nowhere

    @property
    def key(self) -> str:
        s = self.summary
        if self.kind == "job":
            job: dict[str, Any] = s["job"] if isinstance(s.get("job"), dict) else {}
            return "job:" + str(job.get("job_uid") or self.manifest.get("job_uid")
                                or self.path.resolve())
        return "run:" + str(s.get("run_id") or self.manifest.get("run_id") or self.path.resolve())

    @property
    def label(self) -> str:
        """What a person calls it: a run's name; a job's directory name (its name, launcher
        and short id: a job's summary is named after its first member)."""
        if self.kind == "job":
            return self.path.name
        return str(self.summary.get("name") or self.manifest.get("name") or self.path.name)

    @property
    def project(self) -> str:
        p = self.manifest.get("project")
        if isinstance(p, str) and p.strip():
            return p.strip()
        return self.path.resolve().parent.name or str(self.path.parent)

    @property
    def start_wall(self) -> Optional[float]:
        """When it started (wall clock), from the job's section or run.json, else its
        started_utc."""
        job = self.summary.get("job")
        cands = [job.get("started_wall") if isinstance(job, dict) else None,
                 self.manifest.get("start_wall") if self.kind == "run" else None]
        for c in cands:
            if wall_seconds(c) and c:
                return float(c)
        return _iso_wall(self.summary.get("started_utc"))


def _iso_wall(text: Any) -> Optional[float]:
    if not isinstance(text, str):
        return None
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def load_summary(path: Path, is_job: bool) -> tuple[dict[str, Any], bool]:
    """The saved summary, or one rebuilt in memory when it is missing, damaged or still says
    running (a live run is read as a view: nothing is written into its directory)."""
    from ..summary import read_summary
    saved = read_summary(path / SUMMARY, complete=True)
    if saved is not None and saved.get("status") not in (None, "running"):
        return saved, False
    if is_job:
        from ..job.merge import merge
        return merge([path]).to_dict(), True
    from ..rebuild import rebuild_summary
    return rebuild_summary(path).to_dict(), True


def _candidates(root: Path, depth: int = MAX_DEPTH) -> Iterator[tuple[str, Path]]:
    """("run"|"job", dir): the root itself when it is one, else the runs and jobs below it,
    looking through plain folders (a sweep's own output folder) up to `depth` levels; never
    inside a run or job directory (a job's members are read by the job)."""
    root = Path(root)
    if (root / JOB_MANIFEST).is_file():
        yield "job", root
        return
    if (root / MANIFEST).is_file():
        yield "run", root
        return
    if depth <= 0:
        return
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                          and not p.is_symlink())
    except OSError:
        return
    for p in children:
        yield from _candidates(p, depth - 1)


def discover(roots: Sequence[Path]) -> tuple[list[Entry], list[str]]:
    """Every run and job under the roots, each once; and notes on what was left out and why
    (duplicates, job members given on their own)."""
    from ..job.layout import members

    found: list[Entry] = []
    notes: list[str] = []
    seen_paths: set[Path] = set()
    for root in roots:
        for kind, path in _candidates(Path(root)):
            real = path.resolve()
            if real in seen_paths:
                continue
            seen_paths.add(real)
            manifest = read_json(path / (JOB_MANIFEST if kind == "job" else MANIFEST)) or {}
            entry = Entry(kind, path, Path(root) if Path(root) != path else path.parent,
                          {}, manifest)
            try:
                entry.summary, entry.rebuilt = load_summary(path, kind == "job")
                if kind == "job":
                    entry.members = [m.path for m in members(path)]
            except Exception as why:   # one damaged run is one noted entry, never the end
                entry.error = f"{type(why).__name__}: {why}"[:300]
                entry.summary = {"name": manifest.get("name") or path.name,
                                 "status": "unreadable"}
            found.append(entry)
    # job members are counted in their job: a member directory given on its own is dropped
    member_paths = {p.resolve() for e in found if e.kind == "job" for p in e.members}
    out: list[Entry] = []
    keys: dict[str, Path] = {}
    for e in found:
        if e.kind == "run" and e.path.resolve() in member_paths:
            notes.append(f"{e.path}: a member of a job also given, counted in the job")
            continue
        if e.error is None and e.key in keys:
            notes.append(f"{e.path}: the same {e.kind} as {keys[e.key]} (copied?), counted once")
            continue
        keys[e.key] = e.path
        out.append(e)
    return out, notes


# -- the inventory ---------------------------------------------------------------------------------
@dataclass
class InventoryRow:
    month: str                     # "YYYY-MM" (UTC)
    project: str
    region: str
    facility_energy_kwh: float = 0.0
    emissions_tco2e: float = 0.0
    gpu_hours: float = 0.0
    entries: list[str] = field(default_factory=list)      # run / job names (dirs)
    factors: dict[str, dict[str, Any]] = field(default_factory=dict)   # label -> factor
    bases: set[str] = field(default_factory=set)

    @property
    def gco2_per_kwh_effective(self) -> Optional[float]:
        return (self.emissions_tco2e * 1e6 / self.facility_energy_kwh
                if self.facility_energy_kwh > 0 else None)

    def to_dict(self) -> dict[str, Any]:
        return {"month": self.month, "project": self.project, "region": self.region,
                "facility_energy_kwh": self.facility_energy_kwh,
                "emissions_tco2e": self.emissions_tco2e, "gpu_hours": self.gpu_hours,
                "entries": list(self.entries),
                "gco2_per_kwh_effective": self.gco2_per_kwh_effective,
                "factors": list(self.factors.values()), "split_basis": sorted(self.bases)}

    def csv_row(self) -> dict[str, Any]:
        f = list(self.factors.values())
        eff = self.gco2_per_kwh_effective
        return {"month": self.month, "project": self.project, "region": self.region,
                "facility_energy_kwh": f"{self.facility_energy_kwh:.9g}",
                "emissions_tco2e": f"{self.emissions_tco2e:.9g}",
                "gpu_hours": f"{self.gpu_hours:.6g}", "entries": len(self.entries),
                "gco2_per_kwh_effective": "" if eff is None else f"{eff:.6g}",
                "factor": "; ".join(x["label"] for x in f),
                "factor_source": "; ".join(sorted({str(x.get("source")) for x in f})),
                "factor_year": "; ".join(sorted({str(x.get("year") or "n/a") for x in f})),
                "factor_licence": "; ".join(sorted({str(x.get("licence") or "n/a") for x in f})),
                "split_basis": "; ".join(sorted(self.bases))}


@dataclass
class Inventory:
    rows: list[InventoryRow]
    notes: list[str]
    entries: int                   # runs and jobs counted

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows], "notes": list(self.notes),
                "entries": self.entries, "columns": CSV_COLUMNS,
                "basis": "location-based (each run's grid-average or live factor); facility "
                         "energy = IT energy x PUE; months in UTC"}

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow(r.csv_row())
        return buf.getvalue()


@dataclass
class _Part:
    """A share of an entry with one region: a run, or one node of a job."""

    region: str
    facility_j: float
    emissions_kg: float
    gpu_s: float
    grid: dict[str, Any]
    run_dirs: list[Path]           # whose logs hold its energy timeline
    # a run's intensity periods (wall start, wall end, g CO2e): with live intensity, what
    # each month's emissions are taken from
    periods: list[tuple[float, float, float]] = field(default_factory=list)


def inventory(roots: Sequence[Path]) -> Inventory:
    entries, notes = discover(roots)
    return inventory_of(entries, notes)


def inventory_of(entries: Iterable[Entry], notes: Optional[list[str]] = None) -> Inventory:
    """The inventory of entries already found (discover())."""
    rows: dict[tuple[str, str, str], InventoryRow] = {}
    notes = list(notes or [])
    counted = 0
    for e in entries:
        if e.error is not None:
            notes.append(f"{e.path}: unreadable, not counted ({e.error})")
            continue
        start = e.start_wall
        if start is None:
            notes.append(f"{e.path}: no start time, not counted")
            continue
        duration = e.summary.get("duration_s")
        duration = float(duration) if number(duration) and duration > 0 else 0.0
        counted += 1
        for part in _parts(e):
            shares, basis = _month_shares(part, start, duration)
            c_shares = _period_shares(part.periods, shares)
            for month, (e_frac, t_frac) in shares.items():
                key = (month, e.project, part.region)
                row = rows.get(key)
                if row is None:
                    row = rows[key] = InventoryRow(month, e.project, part.region)
                row.facility_energy_kwh += part.facility_j * e_frac / J_PER_KWH
                row.emissions_tco2e += part.emissions_kg * c_shares.get(month, e_frac) / 1000.0
                row.gpu_hours += part.gpu_s * t_frac / 3600.0
                label = e.label
                if label not in row.entries:
                    row.entries.append(label)
                fac = _factor(part.grid)
                row.factors.setdefault(fac["label"], fac)
                row.bases.add(basis)
    return Inventory(sorted(rows.values(), key=lambda r: (r.month, r.project, r.region)),
                     notes, counted)


def _factor(g: dict[str, Any]) -> dict[str, Any]:
    code = g.get("region_code") or "n/a"
    value = g.get("gco2_per_kwh")
    label = f"{code} {value:g} gCO2e/kWh" if number(value) else f"{code} (factor n/a)"
    if g.get("kind") and g.get("kind") != "annual":
        label += f" ({g.get('kind')})"
    return {"label": label, "region_code": code, "gco2_per_kwh": value,
            "source": g.get("source") or "n/a", "year": g.get("year"),
            "licence": g.get("licence"), "kind": g.get("kind")}


def _f(x: Any) -> float:
    return float(x) if number(x) else 0.0


def _gpu_seconds(devices: Iterable[Any], default_s: float) -> float:
    total = 0.0
    for d in devices:
        if not isinstance(d, dict) or d.get("component") != "gpu":
            continue
        a, b = d.get("start_s"), d.get("end_s")
        total += (float(b) - float(a)) if number(a) and number(b) and b >= a else default_s
    return total


def _parts(e: Entry) -> list[_Part]:
    s = e.summary
    facility = _f(s.get("facility_energy_j"))
    it = _f(s.get("energy_j"))
    emissions = _f(s.get("emissions_kg"))
    duration = _f(s.get("duration_s"))
    grid: dict[str, Any] = s["grid"] if isinstance(s.get("grid"), dict) else {}
    job: dict[str, Any] = s["job"] if isinstance(s.get("job"), dict) else {}
    nodes = [n for n in job.get("nodes") or () if isinstance(n, dict)]
    if e.kind != "job" or not nodes or it <= 0:
        return [_Part(str(grid.get("region_code") or "n/a"), facility, emissions,
                      _gpu_seconds(s.get("devices") or (), duration), grid,
                      e.members if e.kind == "job" else [e.path],
                      _periods(s) if e.kind == "run" else [])]
    pue = facility / it
    grids: dict[str, dict[str, Any]] = {}
    for item in (s.get("carbon") or {}).get("grids") or ():
        if isinstance(item, dict) and isinstance(item.get("grid"), dict):
            for n in item.get("nodes") or ():
                grids[str(n)] = item["grid"]
    out = []
    devices = [d for d in s.get("devices") or () if isinstance(d, dict)]
    for n in nodes:
        name = str(n.get("node"))
        g = grids.get(name) or grid
        dirs = [p for p in e.members if p.parent.name == name]
        out.append(_Part(str(n.get("grid_region") or g.get("region_code") or "n/a"),
                         _f(n.get("energy_j")) * pue, _f(n.get("emissions_kg")),
                         _node_gpu_seconds(dirs, [d for d in devices
                                                  if str(d.get("node")) == name], duration),
                         g, dirs))
    return out


def _node_gpu_seconds(member_dirs: Sequence[Path], devices: Sequence[Any],
                      duration: float) -> float:
    """A job node's GPU seconds: its members' devices' measured spans (a job's merged devices
    carry none); a member without a readable summary counts the job's duration per GPU."""
    from ..summary import read_summary

    spans = []
    for d in member_dirs:
        s = read_summary(d / SUMMARY, complete=True)
        if s is None:
            return _gpu_seconds(devices, duration)
        spans.append(_gpu_seconds(s.get("devices") or (), _f(s.get("duration_s"))))
    return sum(spans) if spans else _gpu_seconds(devices, duration)


# -- months ---------------------------------------------------------------------------------------
def month_of(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m")


def month_starts(a: float, b: float) -> list[float]:
    """Wall clocks of the first instant of each UTC month strictly inside (a, b]."""
    out: list[float] = []
    d = datetime.fromtimestamp(a, timezone.utc)
    y, m = d.year, d.month
    while True:
        m += 1
        if m > 12:
            y, m = y + 1, 1
        w = datetime(y, m, 1, tzinfo=timezone.utc).timestamp()
        if w > b:
            return out
        out.append(w)


def _periods(s: dict[str, Any]) -> list[tuple[float, float, float]]:
    """The run's carbon periods (summary.carbon.parts), when there are several (live
    intensity); one period is the annual factor, where emissions follow energy exactly."""
    parts = (s.get("carbon") or {}).get("parts") if isinstance(s.get("carbon"), dict) else None
    out = []
    for p in parts if isinstance(parts, list) else ():
        if isinstance(p, dict) and wall_seconds(p.get("start_wall")) and wall_seconds(
                p.get("end_wall")) and number(p.get("emissions_g")) \
                and p["end_wall"] >= p["start_wall"]:
            out.append((float(p["start_wall"]), float(p["end_wall"]), float(p["emissions_g"])))
    return out if len(out) > 1 else []


def _period_shares(periods: Sequence[tuple[float, float, float]],
                   shares: dict[str, tuple[float, float]]) -> dict[str, float]:
    """month -> share of the emissions, from the intensity periods (a period across a month
    boundary split by time: periods are minutes long); {} when there are none to use."""
    total = sum(g for _, _, g in periods)
    if len(shares) < 2 or total <= 0:
        return {}
    out: dict[str, float] = {}
    for a, b, g in periods:
        if b <= a:
            out[month_of(a)] = out.get(month_of(a), 0.0) + g / total
            continue
        edges = [a, *month_starts(a, b), b]
        for x, y in zip(edges, edges[1:]):
            out[month_of(x)] = out.get(month_of(x), 0.0) + g * (y - x) / (b - a) / total
    return out


def _month_shares(part: _Part, start: float, duration: float
                  ) -> tuple[dict[str, tuple[float, float]], str]:
    """month -> (share of the energy, share of the time), and the basis used."""
    end = start + duration
    cuts = month_starts(start, end)
    if not cuts:
        return {month_of(start): (1.0, 1.0)}, BASIS_ONE_MONTH
    edges = [start, *cuts, end]
    t_shares = [(b - a) / duration for a, b in zip(edges, edges[1:])]
    months = [month_of(a) for a in edges[:-1]]
    at = _energy_at(part.run_dirs, cuts)
    if at is None:
        return {months[0]: (1.0, 1.0)}, BASIS_START
    energies, total = at
    cum = [0.0, *energies, total]
    e_shares = [max(0.0, (b - a) / total) for a, b in zip(cum, cum[1:])]
    return {m: (es, ts) for m, es, ts in zip(months, e_shares, t_shares)}, BASIS_TIMELINE


def _energy_at(run_dirs: Sequence[Path], walls: Sequence[float]
               ) -> Optional[tuple[list[float], float]]:
    """The summed cumulative energy of the run directories' devices at each wall clock, and at
    their end; None when no directory has a usable reading."""
    at = [0.0] * len(walls)
    total = 0.0
    any_reading = False
    for d in run_dirs:
        manifest = read_json(d / MANIFEST) or {}
        start = manifest.get("start_wall")
        if not (wall_seconds(start) and start):
            continue
        got = _run_energy_at(d, manifest, [w - float(start) for w in walls])
        if got is None:
            continue
        any_reading = True
        for i, v in enumerate(got[0]):
            at[i] += v
        total += got[1]
    return (at, total) if any_reading and total > 0 else None


def _run_energy_at(run_dir: Path, manifest: dict[str, Any], ts: Sequence[float]
                   ) -> Optional[tuple[list[float], float]]:
    """One run's energy (its counted devices' cumulative j) at run times `ts`: the last
    reading at or before each, read in time order from its condensed timelines, raw segments
    and samples.jsonl; and its last reading."""
    from ..rundir.snapshot import read_timeline, segments, timelines
    from ..sensors.base import counted

    parts = {str(x.get("name")) for x in manifest.get("devices") or ()
             if isinstance(x, dict) and not counted(x.get("details"))}
    try:
        condensed = dict(timelines(run_dir))
        raw = dict(segments(run_dir))
    except OSError:
        condensed, raw = {}, {}
    latest: dict[str, float] = {}
    out: list[Optional[float]] = [None] * len(ts)
    order = sorted(range(len(ts)), key=lambda i: ts[i])
    k = 0
    seen = False

    def records() -> Iterator[dict[str, Any]]:
        for i in sorted(set(condensed) | set(raw)):
            if i in condensed:
                yield from read_timeline(condensed[i])
            else:
                yield from read_samples(raw[i])
        yield from read_samples(run_dir / SAMPLES)

    for rec in records():
        d = rec.get("d")
        if not isinstance(d, dict):
            continue
        t = float(rec["t"])
        while k < len(order) and t > ts[order[k]]:
            out[order[k]] = sum(latest.values())
            k += 1
        for name, g in d.items():
            if name in parts:
                continue
            j = g.get("j") if isinstance(g, dict) else (g[5] if isinstance(g, list)
                                                         and len(g) == 6 else None)
            if number(j) and math.isfinite(j):
                latest[name] = float(j)
                seen = True
    if not seen:
        return None
    final = sum(latest.values())
    return [final if v is None else v for v in out], final


__all__ = ["BASIS_ONE_MONTH", "BASIS_START", "BASIS_TIMELINE", "CSV_COLUMNS", "Entry",
           "Inventory", "InventoryRow", "discover", "inventory", "inventory_of", "load_summary",
           "month_of", "month_starts"]
