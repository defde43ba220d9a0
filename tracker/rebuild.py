"""Rebuild a run's summary from its log directory (a run that was killed, or any run).

samples.jsonl holds the raw readings (power W, counter J) in the order the sampler applied
them, the window marks and the live-intensity periods; replaying them through the same
EnergyCurve gives the numbers the live tracker had at its last flushed sample.
"""

from __future__ import annotations

import os
import socket
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

from . import snapshot
from .errors import ConfigError
from .runlog import (
    MANIFEST,
    SAMPLES,
    STEP_COLUMNS,
    SUMMARY,
    Skipped,
    read_json,
)
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
    it, steps are returned as windows."""
    from .api import frontier, it_energy_at
    from .carbon import IntensityPeriod
    from .ledger import STEPS_FILE, Ledger, read_steps
    from .summary_build import marked_spans

    manifest = checked_manifest(read_json(run_dir / MANIFEST), run_dir)
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
    periods: list[Any] = []
    t_last = 0.0
    skipped = Skipped()
    # A long run's latest snapshot holds everything up to its raw segment; replay the rest.
    snap = snapshot.read(run_dir) if with_ledger else None
    after, skip_rows = -1, 0
    if snap is not None:
        try:
            after, t_last, skip_rows = _restore(snap, devices, windows, periods, ledger)
        except (KeyError, TypeError, ValueError) as e:
            manifest.setdefault("notes", []).append(f"snapshot.json not usable ({e}); "
                                                    "replayed what raw logs are left")
            snap, after, skip_rows = None, -1, 0
    if ledger is not None and (run_dir / STEPS_FILE).exists():
        # Every closed step is in steps.bin (its energy too once settled: recomputed here).
        try:
            ledger.add_steps([(i, -1 if r["parent"] is None else r["parent"], r["t_start"],
                               r["t_end"], r["index"], r["samples"], r["tokens"])
                              for i, r in enumerate(read_steps(run_dir / STEPS_FILE))
                              if i >= skip_rows and r["t_end"] >= r["t_start"]])
        except (OSError, ValueError) as e:
            manifest.setdefault("notes", []).append(f"steps.bin unreadable ({e})")
    if snap is None and snapshot.timelines(run_dir) and not snapshot.segments(run_dir):
        manifest.setdefault("notes", []).append(
            "no usable snapshot: the condensed timeline segments are not replayed, so the "
            "energy before the oldest raw log is missing")
    for rec in snapshot.records_after(run_dir, after, skipped):
        tick = False
        try:
            t = float(rec["t"])
            if "mark" in rec:
                apply_window_record(windows, rec)
            elif "steps" in rec:
                rows = [_step_row(r) for r in rec["steps"]]
                if ledger is not None:
                    ledger.add_steps(rows)
                else:
                    apply_window_record(windows, {"t": t, "steps": rows})
            elif "intensity" in rec:
                periods.append(IntensityPeriod.from_dict(rec["intensity"]))
            else:   # a sampler tick, with or without readings
                readings = rec.get("d", {})
                if not isinstance(readings, dict):
                    raise ValueError("readings are not an object")
                got_all = {name: _reading(got) for name, got in readings.items()
                           if name in devices}
                for name, got in got_all.items():
                    apply_reading(devices[name], t, got, final=bool(rec.get("final")))
                tick = True
            t_last = max(t_last, t)
        except (KeyError, TypeError, ValueError, AttributeError):
            skipped.lines += 1   # one damaged record costs that record, not the run
            continue
        if tick and ledger is not None:   # as the live sampler does after every tick
            ledger.advance(frontier(devs))
    from .follow import joined_windows, read_joined
    if skipped.lines:
        manifest.setdefault("notes", []).append(skipped.note(SAMPLES))
    return (manifest, devs, list(windows.values()) + joined_windows(read_joined(run_dir)),
            periods, t_last, ledger)


def _restore(snap: dict[str, Any], devices: dict[str, DeviceState],
             windows: dict[int, Window], periods: list[Any], ledger: Any
             ) -> tuple[int, float, int]:
    """Put a snapshot's state into the rebuild; returns (its raw segment, its time, the
    steps.bin rows it already holds)."""
    from .carbon import IntensityPeriod

    for name, state in snap["devices"].items():
        if name in devices:
            snapshot.restore_device(devices[name], state)
    for w in snap.get("windows", []):
        windows[int(w["id"])] = Window(id=int(w["id"]), name=str(w["name"]),
                                       kind=str(w["kind"]), parent=w.get("parent"),
                                       t_start=float(w["t_start"]), t_end=w.get("t_end"),
                                       attrs=dict(w.get("attrs") or {}))
    periods.extend(IntensityPeriod.from_dict(p) for p in snap.get("periods", []))
    rows = 0
    if ledger is not None and snap.get("ledger") is not None:
        ledger.restore(snap["ledger"])
        rows = ledger.count + ledger.pending
    return int(snap["segment"]), float(snap.get("t_last") or snap["t"]), rows


def checked_manifest(manifest: Any, run_dir: Path) -> dict[str, Any]:
    """run.json, usable for a rebuild, or a one-line ConfigError saying what is wrong."""
    if manifest is None:
        raise ConfigError(f"{run_dir} is not a run directory (no readable {MANIFEST})")
    if not isinstance(manifest, dict):
        raise ConfigError(f"{run_dir / MANIFEST} is damaged: not a JSON object")
    for key, kind in (("run_id", str), ("start_wall", (int, float)), ("grid", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ConfigError(f"{run_dir / MANIFEST} is damaged: no usable {key!r}")
    try:
        grid_factor(manifest)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{run_dir / MANIFEST} is damaged: its grid factor is not usable "
                          f"({e})") from None
    pue = manifest.get("pue")
    if isinstance(pue, bool) or not isinstance(pue, (int, float)) or not pue >= 1.0:
        manifest["pue"] = 1.0
        manifest.setdefault("notes", []).append(f"run.json has no usable PUE ({pue!r}): 1.0 "
                                                "used")
    if not isinstance(manifest.get("devices", []), list):
        manifest["devices"] = []
    if not isinstance(manifest.get("notes", []), list):
        manifest["notes"] = []
    manifest.setdefault("name", run_dir.name)
    return manifest


def _sensor_info(d: Any) -> Optional[SensorInfo]:
    """A device of run.json (unknown keys ignored), or None if it is not one."""
    if not isinstance(d, dict) or not isinstance(d.get("name"), str):
        return None
    known = {f.name for f in fields(SensorInfo)}
    try:
        return SensorInfo(**{k: v for k, v in d.items() if k in known})
    except TypeError:
        return None


def _number(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x or x in (
            float("inf"), float("-inf")):
        raise ValueError(f"not a number: {x!r}")
    return float(x)


def _reading(got: Any) -> dict[str, float]:
    if not isinstance(got, dict):
        raise ValueError("a reading is not an object")
    return {k: _number(v) for k, v in got.items() if k in ("w", "a", "c", "x", "u", "j")}


def _step_row(r: Any) -> tuple[Any, ...]:
    if not isinstance(r, (list, tuple)) or len(r) != len(STEP_COLUMNS):
        raise ValueError("a step row of the wrong shape")
    wid, parent, t0, t1, index, samples, tokens = r
    return (int(wid), int(parent), _number(t0), _number(t1), int(index), int(samples),
            int(tokens))


def apply_window_record(windows: dict[int, Window], rec: dict[str, Any]) -> None:
    """Apply a samples.jsonl / marks-*.jsonl record holding a window mark or closed steps."""
    if "mark" in rec:
        apply_mark(windows, rec["mark"], float(rec["t"]))
    for row in rec.get("steps", ()):
        s = dict(zip(STEP_COLUMNS, row))
        attrs = {k: s[k] for k in ("index", "samples", "tokens") if s[k] not in (0, -1)}
        if s["index"] == 0:
            attrs["index"] = 0
        windows[s["id"]] = Window(id=s["id"], name=f"step {s['index']}", kind="step",
                                  parent=None if s["parent"] < 0 else s["parent"],
                                  t_start=s["t_start"], t_end=s["t_end"], attrs=attrs)


def apply_mark(windows: dict[int, Window], m: dict[str, Any], t: float) -> Optional[Window]:
    """Apply one start/end mark record to the windows by id; returns the window touched.
    Raises ValueError for a mark that is not one (no integer id)."""
    if not isinstance(m, dict) or isinstance(m.get("id"), bool) or not isinstance(m.get("id"),
                                                                                int):
        raise ValueError("a mark without an id")
    attrs = m.get("attrs", {})
    attrs = dict(attrs) if isinstance(attrs, dict) else {}
    if m.get("edge") == "start":
        parent = m.get("parent")
        started = Window(id=m["id"], name=str(m.get("name", "")),
                         kind=str(m.get("kind", "phase")),
                         parent=parent if isinstance(parent, int) and not isinstance(parent, bool)
                         else None, t_start=t, attrs=attrs)
        windows[m["id"]] = started
        return started
    w = windows.get(m["id"])
    if w is not None and t >= w.t_start:
        w.t_end = t
        w.attrs.update(attrs)
    return w


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
        status = str(recorded) if recorded not in (None, "running") else (
            "running" if is_alive(manifest) else "killed")
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
    from .summary_build import Price

    cfg = manifest.get("config") or {}
    if cfg.get("price_per_kwh") is None or not cfg.get("currency"):
        return None
    return Price(float(cfg["price_per_kwh"]), str(cfg["currency"]))


def is_alive(manifest: dict[str, Any]) -> bool:
    """Is the process that wrote this run still running (same host only)?"""
    host = manifest.get("host", {})
    pid = host.get("pid")
    if not pid or host.get("hostname") != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
