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

from .errors import ConfigError
from .runlog import (
    MANIFEST,
    SAMPLES,
    STEP_COLUMNS,
    SUMMARY,
    read_json,
    read_samples,
)
from .sampler import DeviceState, apply_reading
from .sensors.base import Sensor, SensorInfo
from .summary import Summary, Window
from .summary_build import build_summary


class RecordedSensor(Sensor):
    """A device known only from run.json: it has a description, no live reads."""

    def __init__(self, info: SensorInfo):
        self.info = info


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[DeviceState], list[Window],
                                     list[Any], float]:
    """(manifest, devices with rebuilt curves, windows, intensity periods, last sample time)."""
    from .carbon import IntensityPeriod

    manifest = read_json(run_dir / MANIFEST)
    if manifest is None:
        raise ConfigError(f"{run_dir} is not a run directory (no readable {MANIFEST})")
    devices = {d["name"]: DeviceState(RecordedSensor(SensorInfo(**d)))
               for d in manifest.get("devices", [])}
    windows: dict[int, Window] = {}
    periods: list[Any] = []
    t_last = 0.0
    samples = run_dir / SAMPLES
    if samples.exists():
        for rec in read_samples(samples):
            t = float(rec.get("t", 0.0))
            t_last = max(t_last, t)
            if "d" in rec:
                for name, got in rec["d"].items():
                    dev = devices.get(name)
                    if dev is not None:
                        apply_reading(dev, t, got, final=bool(rec.get("final")))
            elif "mark" in rec or "steps" in rec:
                apply_window_record(windows, rec)
            elif "intensity" in rec:
                periods.append(IntensityPeriod.from_dict(rec["intensity"]))
    from .follow import joined_windows, read_joined
    return (manifest, list(devices.values()),
            list(windows.values()) + joined_windows(read_joined(run_dir)), periods, t_last)


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
    """Apply one start/end mark record to the windows by id; returns the window touched."""
    if m.get("edge") == "start":
        w = Window(id=m["id"], name=m.get("name", ""), kind=m.get("kind", "phase"),
                   parent=m.get("parent"), t_start=t, attrs=dict(m.get("attrs", {})))
        windows[m["id"]] = w
        return w
    w = windows.get(m["id"])
    if w is not None:
        w.t_end = t
        w.attrs.update(m.get("attrs", {}))
    return w


def grid_factor(manifest: dict[str, Any]) -> Any:
    """The run's GridFactor, as recorded in run.json."""
    from .carbon.factor import GridFactor

    known = {f.name for f in fields(GridFactor)}
    return GridFactor(**{k: v for k, v in manifest["grid"].items() if k in known})


def rebuild_summary(run_dir: Path, status: Optional[str] = None) -> Summary:
    """Summary of a run from its files; `status` defaults to what the files say."""
    manifest, devices, windows, periods, t_last = load_run(run_dir)
    old = read_json(run_dir / SUMMARY) or {}
    if status is None:
        status = old.get("status") if old.get("status") not in (None, "running") else (
            "running" if is_alive(manifest) else "killed")
    t_end = max([d.curve.end or 0.0 for d in devices] + [t_last])
    extended = []
    for d in devices:
        # A killed run never took its final reading: hold each device's last power up to the
        # last logged tick (< 1 s for the 1 Hz models), as the final reading would have.
        if status == "killed" and d.curve.last_power_w is not None and d.curve.end < t_end:
            d.curve.add_power(t_end, d.curve.last_power_w)
            extended.append(d.sensor.name)
    for w in windows:
        if w.t_end is None:
            w.t_end = t_end
            w.attrs["closed_by"] = "rebuild (the run ended inside this window)"
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
