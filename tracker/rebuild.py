"""Rebuild a run's summary from its log directory (a run that was killed, or any run).

samples.jsonl holds the raw readings (power W, counter J) in the order the sampler applied
them, the window marks and the live-intensity periods; replaying them through the same
EnergyCurve gives the numbers the live tracker had at its last flushed sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigError
from .rundir import names, snapshot
from .rundir.liveness import owner_state
from .rundir.names import MANIFEST, SAMPLES, SUMMARY
from .rundir.records import apply_window_record, checked_reading, checked_step_row
from .rundir.runlog import Skipped, read_json
from .rundir.untrusted import number, run_seconds, wall_seconds
from .sampler import DeviceState, apply_reading
from .sensors.base import Sensor, SensorInfo
from .summary import Summary, Window
from .summary_build import build_summary


class RecordedSensor(Sensor):
    """A device known only from run.json: it has a description, no live reads."""

    def __init__(self, info: SensorInfo):
        self.info = info


def load_run(run_dir: Path, *, with_ledger: bool = False
             ) -> tuple[dict[str, Any], list[DeviceState], list[Window], list[Any], float, Any]:
    """(manifest, devices with rebuilt curves, windows, intensity periods, last sample time,
    ledger). `with_ledger`: replay closed steps through a ledger exactly as the live sampler
    did (settled after each tick; call its finish() once the curves are complete); without
    it, steps are returned as windows. Every file is read as untrusted input (untrusted.py):
    a damaged piece is skipped and said so in the manifest's notes, never raised."""
    from .it_energy import frontier

    manifest = checked_manifest(read_json(run_dir / MANIFEST), run_dir)
    notes: list[str] = manifest["notes"]
    devices, ledger, windows = _fresh(manifest, with_ledger)
    devs = list(devices.values())
    periods: list[Any] = []
    t_last = 0.0
    skipped = Skipped()
    # A long run's latest snapshot holds everything up to its raw segment; replay the rest.
    snap = snapshot.read(run_dir) if with_ledger else None
    after, skip_rows = -1, 0
    if snap is not None:
        try:
            after, t_last, skip_rows = _restore(snap, devices, windows, periods, ledger)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError,
                OverflowError) as e:
            notes.append(f"snapshot.json not usable ({str(e)[:120]}); replayed what raw logs "
                         "are left")
            snap, after, skip_rows, t_last = None, -1, 0, 0.0
            periods.clear()
            devices, ledger, windows = _fresh(manifest, with_ledger)
            devs = list(devices.values())
    if ledger is not None:   # steps older than the per-step horizon: their group records
        skip_rows = _restore_groups(run_dir, ledger, skip_rows, notes)
    steps = _StepFeed(run_dir, skip_rows) if ledger is not None else None
    if snap is None and snapshot.timelines(run_dir) and not snapshot.segments(run_dir):
        notes.append("no usable snapshot: the condensed timeline segments are not replayed, so "
                     "the energy before the oldest raw log is missing")
    for rec in snapshot.records_after(run_dir, after, skipped):
        tick = False
        try:
            t = float(rec["t"])
            if "mark" in rec:
                apply_window_record(windows, rec)
            elif "steps" in rec:
                rows = [checked_step_row(r) for r in rec["steps"]]
                if ledger is not None:
                    ledger.add_steps(rows)
                else:
                    apply_window_record(windows, {"t": t, "steps": rows})
            elif "intensity" in rec:
                periods.append(intensity_period(rec["intensity"]))
            else:   # a sampler tick, with or without readings
                readings = rec.get("d", {})
                if not isinstance(readings, dict):
                    raise ValueError("readings are not an object")
                got_all = {name: checked_reading(got) for name, got in readings.items()
                           if name in devices}
                for name, got in got_all.items():
                    apply_reading(devices[name], t, got, final=bool(rec.get("final")))
                tick = True
            t_last = max(t_last, t)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            skipped.lines += 1   # one damaged record costs that record, not the run
            continue
        if tick and ledger is not None:   # as the live sampler does after every tick
            f = frontier(devs)
            if steps is not None:
                steps.feed(ledger, f)
            ledger.advance(f)
    if steps is not None:
        steps.feed_rest(ledger)
        if steps.note:
            notes.append(steps.note)
    from .follow import joined_windows, read_joined
    if skipped.lines:
        notes.append(skipped.note(SAMPLES))   # type: ignore[arg-type]
    return (manifest, devs, list(windows.values()) + joined_windows(read_joined(run_dir)),
            periods, t_last, ledger)


def _fresh(manifest: dict[str, Any], with_ledger: bool
           ) -> tuple[dict[str, DeviceState], Any, dict[int, Window]]:
    """The run's devices (from run.json, with empty curves), a ledger over them, no windows."""
    from .it_energy import it_energy_at
    from .rundir.ledger import Ledger
    from .summary_build import marked_spans

    devices: dict[str, DeviceState] = {}
    for d in manifest.get("devices") or ():
        info = _sensor_info(d)
        if info is not None:
            devices[info.name] = DeviceState(RecordedSensor(info))
    devs = list(devices.values())
    windows: dict[int, Window] = {}
    ledger = None
    if with_ledger:
        ledger = Ledger(lambda ts: it_energy_at(devs, ts), devs,
                        marked=lambda: marked_spans(list(windows.values())))
    return devices, ledger, windows


def _restore_groups(run_dir: Path, ledger: Any, skip_rows: int, notes: list[str]) -> int:
    """Continue from step_groups.jsonl when it reaches past what the snapshot holds (rows
    before `skip_rows`): the ledger's step accounts after its last whole record. Returns the
    first row the per-step records are then replayed from."""
    from .rundir.step_groups import read_groups

    disk = read_groups(run_dir)
    if disk is None:
        return skip_rows
    if disk.note:
        notes.append(disk.note)
    if disk.to > skip_rows:
        ledger.restore_steps(disk)
        return disk.to
    return skip_rows


class _StepFeed:
    """The per-step records (steps.bin and its segments) fed to a rebuild's ledger a block at
    a time, as the replay's frontier reaches each block (as the live run fed them), so a
    rebuild holds the steps near the frontier, not every step of the run. Rows before
    `skip_rows` are held already (snapshot, group records); rows with implausible times are
    skipped; rows missing (deleted, no group record for them) are said."""

    HOLD_STEPS = 1 << 20      # after the last tick: settle early rather than hold more

    def __init__(self, run_dir: Path, skip_rows: int):
        from .rundir.ledger import StepFileDamage
        self.damage = StepFileDamage()
        self._skip = skip_rows
        self._blocks = self._read(run_dir)
        self._next: Optional[list[tuple[Any, ...]]] = None
        self._error: Optional[str] = None
        self.bad = 0
        self.missing = 0
        self._advance()

    def _read(self, run_dir: Path) -> Iterator[list[tuple[Any, ...]]]:
        from .rundir.step_segments import read_step_blocks
        expected = self._skip
        for start, c in read_step_blocks(run_dir, self.damage, self._skip):
            n = len(c["t_start"])
            if start + n <= self._skip:
                continue
            if start > expected:
                self.missing += start - expected
            expected = start + n
            first = max(0, self._skip - start)
            rows = []
            for i in range(first, n):
                t0, t1 = c["t_start"][i], c["t_end"][i]
                if not (run_seconds(t0) and run_seconds(t1) and t1 >= t0):
                    self.bad += 1
                    continue
                rows.append((start + i, c["parent"][i], t0, t1, c["index"][i],
                             c["samples"][i], c["tokens"][i]))
            if rows:
                yield rows

    def _advance(self) -> None:
        try:
            self._next = next(self._blocks, None)
        except (OSError, ValueError) as e:
            self._next, self._error = None, f"steps.bin unreadable ({e})"

    def feed(self, ledger: Any, frontier: float) -> None:
        """Add every block with a step that ends by `frontier`."""
        while self._next is not None and self._next[0][3] <= frontier:
            ledger.add_steps(self._next)
            self._advance()

    def feed_rest(self, ledger: Any) -> None:
        while self._next is not None:
            ledger.add_steps(self._next)
            if ledger.pending > self.HOLD_STEPS:
                ledger.settle_pending()
            self._advance()

    @property
    def note(self) -> Optional[str]:
        parts = [p for p in (self._error, self.damage.note(),
                             f"{self.bad:,} steps of steps.bin with implausible times skipped"
                             if self.bad else None,
                             f"{self.missing:,} steps have neither a per-step record nor a "
                             "group record (their segment of steps.bin is gone)"
                             if self.missing else None) if p]
        return "; ".join(parts) or None


def _restore(snap: dict[str, Any], devices: dict[str, DeviceState],
             windows: dict[int, Window], periods: list[Any], ledger: Any
             ) -> tuple[int, float, int]:
    """Put a snapshot's state into the rebuild; returns (its raw segment, its time, the
    steps.bin rows it already holds). Everything is checked before anything is changed;
    ValueError (or KeyError, TypeError) says what is not usable."""
    from .rundir.ledger import _check_state

    for name, state in snap["devices"].items():
        if name in devices:
            snapshot._check_device_state(state)
    wins = [_snapshot_window(w) for w in snap.get("windows", [])]
    got_periods = [intensity_period(p) for p in snap.get("periods", [])]
    if ledger is not None and snap.get("ledger") is not None:
        _check_state(snap["ledger"])
    for name, state in snap["devices"].items():
        if name in devices:
            snapshot.restore_device(devices[name], state)
    for w in wins:
        windows[w.id] = w
    periods.extend(got_periods)
    rows = 0
    if ledger is not None and snap.get("ledger") is not None:
        ledger.restore(snap["ledger"])
        rows = ledger.count + ledger.pending
    t = snap.get("t_last") or snap["t"]
    if not run_seconds(t):
        raise ValueError("its time is not a run time")
    return int(snap["segment"]), float(t), rows


def _snapshot_window(w: Any) -> Window:
    if not isinstance(w, dict):
        raise ValueError("a window is not an object")
    wid, parent, t0, t1 = w.get("id"), w.get("parent"), w.get("t_start"), w.get("t_end")
    if wid.__class__ is not int or not (parent is None or parent.__class__ is int) or not \
            run_seconds(t0) or not (t1 is None or run_seconds(t1)):
        raise ValueError("a window's id, parent or times are not usable")
    attrs = w.get("attrs") or {}
    return Window(id=wid, name=str(w.get("name")), kind=str(w.get("kind")), parent=parent,
                  t_start=float(t0), t_end=None if t1 is None else float(t1),
                  attrs=dict(attrs) if isinstance(attrs, dict) else {})


def intensity_period(d: Any) -> Any:
    """A live-intensity period of a log or snapshot, checked (plausible wall clocks, a finite
    intensity), or ValueError."""
    from .carbon import IntensityPeriod
    if not isinstance(d, dict):
        raise ValueError("an intensity period is not an object")
    end, value = d.get("end_wall"), d.get("gco2_per_kwh")
    if not (wall_seconds(d.get("start_wall")) and (end is None or wall_seconds(end))
            and number(value, MAX_GCO2_PER_KWH) and value >= 0):
        raise ValueError("an intensity period without plausible times and intensity")
    return IntensityPeriod.from_dict(d)


MAX_GCO2_PER_KWH = 1e5     # the dirtiest grids are ~1 000
MAX_PUE = 100.0


def checked_manifest(manifest: Any, run_dir: Path) -> dict[str, Any]:
    """run.json, usable for a rebuild, or a one-line ConfigError saying what is wrong. Fields
    a rebuild only reads on the side (config, host, job, name) are replaced by empty ones
    when they have the wrong type."""
    if manifest is None:
        raise ConfigError(f"{run_dir} is not a run directory (no readable {MANIFEST})")
    if not isinstance(manifest, dict):
        raise ConfigError(f"{run_dir / MANIFEST} is damaged: not a JSON object")
    for key, kind in (("run_id", str), ("start_wall", (int, float)), ("grid", dict)):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise ConfigError(f"{run_dir / MANIFEST} is damaged: no usable {key!r}")
    if not wall_seconds(manifest["start_wall"]):
        raise ConfigError(f"{run_dir / MANIFEST} is damaged: no usable 'start_wall' (a wall "
                          f"clock in seconds since 1970 is accepted, not "
                          f"{manifest['start_wall']!r:.40})")
    try:
        _check_grid(grid_factor(manifest))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{run_dir / MANIFEST} is damaged: its grid factor is not usable "
                          f"({str(e)[:120]})") from None
    if not isinstance(manifest.get("notes", []), list):
        manifest["notes"] = []
    manifest.setdefault("notes", [])
    manifest["notes"] = [n for n in manifest["notes"] if isinstance(n, str)]
    pue = manifest.get("pue")
    if not number(pue, MAX_PUE) or not pue >= 1.0:
        manifest["pue"] = 1.0
        manifest["notes"].append(f"run.json has no usable PUE ({pue!r:.40}): 1.0 used")
    if not isinstance(manifest.get("devices", []), list):
        manifest["devices"] = []
    for key in ("config", "host"):
        if not isinstance(manifest.get(key), dict):
            manifest[key] = {}
    if manifest.get("job") is not None and not isinstance(manifest["job"], dict):
        manifest["job"] = None
    cfg = manifest["config"]
    if not isinstance(cfg.get("sampling"), dict):
        cfg["sampling"] = None
    job = manifest.get("job")
    if job is not None:
        job["claims"] = [c for c in job.get("claims") or () if isinstance(c, dict)] \
            if isinstance(job.get("claims"), list) else []
    host = manifest.get("host") or {}
    if host.get("pid") is not None and not (host["pid"].__class__ is int
                                            and 0 < host["pid"] < 1 << 31):
        host["pid"] = None
    if not isinstance(manifest.get("pue_source", ""), str):
        manifest["pue_source"] = "user"
    if not isinstance(manifest.get("name", ""), str):
        manifest["name"] = run_dir.name
    manifest.setdefault("name", run_dir.name)
    return manifest


def _check_grid(g: Any) -> None:
    if not number(g.gco2_per_kwh, MAX_GCO2_PER_KWH) or g.gco2_per_kwh < 0:
        raise ValueError(f"gco2_per_kwh {g.gco2_per_kwh!r:.40} is not an intensity")
    for k in ("region_code", "region_name", "source", "licence", "definition", "kind", "note"):
        if not isinstance(getattr(g, k), str):
            raise ValueError(f"{k} is not text")
    if not (g.year is None or g.year.__class__ is int):
        raise ValueError("year is not a year")
    if not isinstance(g.is_default, bool):
        raise ValueError("is_default is not true/false")


def _sensor_info(d: Any) -> Optional[SensorInfo]:
    """A device of run.json (unknown keys ignored), or None if it is not one."""
    if not isinstance(d, dict) or not all(isinstance(d.get(k), str) for k in (
            "name", "component", "method", "description")) or not isinstance(
            d.get("details", {}), dict):
        return None
    known = {f.name for f in fields(SensorInfo)}
    try:
        return SensorInfo(**{k: v for k, v in d.items() if k in known})
    except TypeError:
        return None


def grid_factor(manifest: dict[str, Any]) -> Any:
    """The run's GridFactor, as recorded in run.json."""
    from .carbon.factor import GridFactor

    known = {f.name for f in fields(GridFactor)}
    return GridFactor(**{k: v for k, v in manifest["grid"].items() if k in known})


def rebuild_summary(run_dir: Path, status: Optional[str] = None) -> Summary:
    """Summary of a run from its files; `status` defaults to what the files say."""
    manifest, devices, windows, periods, t_last, ledger = load_run(run_dir, with_ledger=True)
    old = read_json(run_dir / SUMMARY) or {}
    if status is None:
        recorded = old.get("status")
        status = recorded if isinstance(recorded, str) and 0 < len(recorded) <= 40 and \
            recorded != "running" else (
            "running" if owner_state(Path(run_dir), manifest).alive else "killed")
    t_end = max([d.curve.end or 0.0 for d in devices] + [t_last])
    extended = []
    for d in devices:
        # A killed run never took its final reading: hold each device's last power up to the
        # last logged tick (< 1 s for the 1 Hz models), as the final reading would have.
        end = d.curve.end   # not None: a curve with a last power has readings
        if status == "killed" and d.curve.last_power_w is not None and end is not None \
                and end < t_end:
            d.curve.add_power(t_end, d.curve.last_power_w)
            extended.append(d.sensor.name)
    for w in windows:
        if w.t_end is None:
            w.t_end = t_end
            w.attrs["closed_by"] = "rebuild (the run ended inside this window)"
    ledger.finish()
    notes = list(manifest.get("notes", []))
    if status == "killed":
        notes.append("the run was killed: this summary was rebuilt from samples.jsonl and "
                     f"covers the run up to its last flushed tick (t={t_end:.2f} s)"
                     + (f"; {', '.join(extended)} held at their last power reading to that "
                        "time" if extended else ""))
    factor = grid_factor(manifest)
    return build_summary(
        run_id=manifest["run_id"], name=manifest["name"], status=status,
        start_wall=manifest["start_wall"], t_end=t_end, devices=devices, windows=windows,
        factor=factor, periods=periods or None, live_status=None, pue=manifest["pue"],
        pue_source=manifest.get("pue_source", "user"), notes=notes, run_dir=str(run_dir),
        sampling=manifest.get("config", {}).get("sampling"), price=_price(manifest),
        ledger=ledger,
        elsewhere=sorted({c.get("component") for c in (manifest.get("job") or {}).get("claims", ())
                          if not c.get("measured_here") and c.get("component")}))


def _price(manifest: dict[str, Any]) -> Any:
    from .accounting.price import saved_price

    price, problem = saved_price(manifest.get("config") or {})
    if problem:
        manifest["notes"].append(f"{names.MANIFEST}'s {problem}")
    return price


def is_alive(manifest: dict[str, Any], run_dir: Optional[Path] = None) -> bool:
    """Is the process that wrote this run still running? (liveness.owner_state: the pid on
    this host, the heartbeat from another.)"""
    return owner_state(Path(run_dir) if run_dir is not None else Path("/nonexistent"),
                       manifest).alive
    return True
