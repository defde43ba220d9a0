"""Snapshots: bounded disk and fast rebuilds for long runs.

Every SEGMENT_S of run time the sampler thread checkpoints the run (checkpoint.Checkpoints):

  1. samples.jsonl is renamed to samples.<k>.jsonl and a new samples.jsonl is started;
  2. snapshot.json is written (atomically): the complete state of the run after that tick —
     energy curves (compacted: see curve.py), device states, the ledger (ledger.py), windows,
     intensity periods — and `segment: k`;
  3. samples.<k>.jsonl is condensed into timeline.<k>.jsonl.gz (per second and device: the
     min/mean/max power read and the cumulative energy at the counter read; every mark and
     intensity record: what a report draws), and deleted.

A rebuild (a killed run's report) restores the latest snapshot and replays only what came
after it (raw segments after k, then samples.jsonl) through the same code as the live run, so
a month-long run is read in seconds and gives the numbers the live tracker had. A crash
between any two of the steps leaves either the previous snapshot with the raw segment still
there, or the new snapshot: never a gap.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from .names import SAMPLES, SNAPSHOT
from .names import SEGMENT_RE as _SEGMENT
from .names import SNAPSHOT_SCHEMA as SCHEMA
from .names import TIMELINE_RE as _TIMELINE
from .runlog import Skipped, parse_record, read_json, read_samples, write_json_atomic
from .untrusted import (
    MAX_READING_ABS,
    MAX_RUN_S,
    MAX_SNAPSHOT_BYTES,
    number,
    read_gzip_lines,
    run_seconds,
)

SEGMENT_S = 3600.0            # run time between checkpoints
BUCKET_S = 1.0                # the condensed timeline's resolution

_DEVICE_FIELDS = ("last_power_t", "last_counter_t", "errors", "failures",
                  "consecutive_failures", "lost_at", "last_good_t", "failing_since",
                  "last_util_t")


def _num(x: Any) -> Any:
    """JSON has no infinities: -inf/inf/nan become None (read back as -inf)."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def device_state(d: Any) -> dict[str, Any]:
    out = {k: _num(getattr(d, k)) for k in _DEVICE_FIELDS}
    out["curve"] = d.curve.state()
    out["util_t"], out["util_pct"] = list(d.util_t), list(d.util_pct)
    if getattr(d, "fusion", None) is not None:
        out["fusion"] = d.fusion.state()
    return out


def restore_device(d: Any, state: dict[str, Any]) -> None:
    """Put a device's snapshot state back; ValueError when it is not one (wrong types, times
    or energies out of range) and then nothing is changed."""
    from array import array

    from ..curve import EnergyCurve
    _check_device_state(state)
    d.curve = EnergyCurve.from_state(state["curve"])
    for k in _DEVICE_FIELDS:
        v = state.get(k)
        if k in ("last_power_t", "last_counter_t", "last_util_t") and v is None:
            v = -math.inf
        setattr(d, k, list(v or []) if k == "errors" else v)
    d.util_t, d.util_pct = array("d", state.get("util_t", [])), array(
        "d", state.get("util_pct", []))
    if isinstance(state.get("fusion"), dict):
        from ..fusion import PowerFusion
        d.fusion = PowerFusion.from_state(state["fusion"])


def window_state(w: Any) -> dict[str, Any]:
    return {"id": w.id, "name": w.name, "kind": w.kind, "parent": w.parent,
            "t_start": w.t_start, "t_end": w.t_end, "attrs": w.attrs}


def capture(*, t: float, segment: int, devices: list[Any], ledger: Any, windows: list[Any],
            periods: list[Any], t_last: float) -> dict[str, Any]:
    """The run's state after the tick at run time `t` (sampler thread)."""
    return {"schema": SCHEMA, "t": t, "segment": segment, "t_last": t_last,
            "devices": {d.sensor.name: device_state(d) for d in devices},
            "ledger": ledger.state() if ledger is not None else None,
            "windows": [window_state(w) for w in windows],
            "periods": [p.to_dict() for p in periods]}


def write(run_dir: Path, snapshot: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / SNAPSHOT, snapshot)


def read(run_dir: Path) -> Optional[dict[str, Any]]:
    """The run's snapshot.json, or None when it is missing or unusable: larger than
    MAX_SNAPSHOT_BYTES, damaged (untrusted.read_json_file), another schema, or its times and
    segment not plausible (each device's state is checked when it is restored)."""
    snap = read_json(Path(run_dir) / SNAPSHOT, MAX_SNAPSHOT_BYTES)
    if snap is None or snap.get("schema") != SCHEMA or not isinstance(snap.get("devices"), dict):
        return None
    seg, t, t_last = snap.get("segment"), snap.get("t"), snap.get("t_last")
    if seg.__class__ is not int or not 0 <= seg < 1 << 31 or not run_seconds(t) or not (
            t_last is None or run_seconds(t_last)):
        return None
    for key in ("windows", "periods"):
        if not isinstance(snap.get(key, []), list):
            return None
    if not (snap.get("ledger") is None or isinstance(snap.get("ledger"), dict)):
        return None
    return snap


def segments(run_dir: Path) -> list[tuple[int, Path]]:
    """Rotated raw segments samples.<k>.jsonl, in order."""
    out = []
    for p in Path(run_dir).iterdir():
        m = _SEGMENT.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def records_after(run_dir: Path, segment: int, skipped: Optional[Skipped] = None
                  ) -> Iterator[dict[str, Any]]:
    """The records logged after raw segment `segment` (-1: all): later raw segments, then
    samples.jsonl."""
    for k, path in segments(run_dir):
        if k > segment:
            yield from read_samples(path, skipped)
    live = Path(run_dir) / SAMPLES
    if live.exists():
        yield from read_samples(live, skipped)


# -- the condensed timeline ---------------------------------------------------------------------
def condense(raw: Path, out: Path) -> None:
    """samples.<k>.jsonl -> timeline.<k>.jsonl.gz: one record per second,
    {"t": second, "d": {device: [min W, mean W, max W, n, dt, j]}} with the power read in that
    second (min/mean/max rounded to 0.1 W, null when the device only has a counter; n
    readings) and the device's cumulative energy j (J, to the mJ) at run time t + dt: at the
    counter read in that second when there was one (so every counter read is kept, exactly),
    else at its last reading. Marks, steps and intensity records are kept as they were.
    About 0.2 MB an hour for 8 GPUs at 10 Hz, 1/50 of the raw log. Written to a temporary
    name, then renamed."""
    seconds: dict[int, dict[str, list[Any]]] = {}
    keep: list[dict[str, Any]] = []
    for rec in read_samples(raw):
        if "d" in rec and isinstance(rec["d"], dict):
            t = float(rec["t"])
            k = math.floor(t / BUCKET_S)
            row = seconds.setdefault(k, {})
            for name, got in rec["d"].items():
                if not isinstance(got, dict):
                    continue
                w, c, j = got.get("w"), got.get("c"), got.get("j")
                # [min, sum, max, n, t of j, j, j is at a counter read]
                acc = row.get(name)
                if acc is None:
                    acc = row[name] = [math.inf, 0.0, -math.inf, 0, None, None, False]
                if _finite(w):
                    acc[0], acc[1], acc[2], acc[3] = min(acc[0], w), acc[1] + w, \
                        max(acc[2], w), acc[3] + 1
                if _finite(j) and (_finite(c) or not acc[6]):
                    acc[4], acc[5], acc[6] = t, j, _finite(c)
        elif any(k in rec for k in ("mark", "intensity", "steps", "joined")):
            keep.append(rec)
    rows: list[dict[str, Any]] = []
    for k, row in seconds.items():
        t0 = k * BUCKET_S
        d = {}
        for name, a in row.items():
            if a[3] == 0 and a[5] is None:
                continue
            power = [round(a[0], 1), round(a[1] / a[3], 1), round(a[2], 1)] if a[3] else \
                [None, None, None]
            d[name] = [*power, a[3], None if a[4] is None else round(a[4] - t0, 3),
                       None if a[5] is None else round(a[5], 3)]
        if d:
            rows.append({"t": t0, "d": d})
    rows += keep
    rows.sort(key=lambda r: r["t"])
    tmp = out.with_name(out.name + ".tmp")
    with gzip.open(tmp, "wt", compresslevel=6) as f:
        for r in rows:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    os.replace(tmp, out)


def _finite(x: Any) -> bool:
    return number(x, MAX_READING_ABS)


def _numbers(xs: Any, limit: float) -> bool:
    return isinstance(xs, list) and all(number(x, limit) for x in xs)


def _check_device_state(state: Any) -> None:
    """A device state of snapshot.json as device_state() writes it, or ValueError."""
    if not isinstance(state, dict) or not isinstance(state.get("curve"), dict):
        raise ValueError("a device state is not an object with a curve")
    for k in _DEVICE_FIELDS:
        v = state.get(k)
        if k == "errors":
            if not (v is None or (isinstance(v, list) and all(isinstance(e, str) for e in v))):
                raise ValueError("a device's errors are not a list of text")
        elif not (v is None or run_seconds(v)):
            raise ValueError(f"a device's {k} is not a plausible number")
    for k in ("util_t", "util_pct"):
        if not _numbers(state.get(k, []), MAX_RUN_S):
            raise ValueError(f"a device's {k} is not a list of numbers")
    if not (state.get("fusion") is None or isinstance(state.get("fusion"), dict)):
        raise ValueError("a device's fusion state is not an object")
    curve = state["curve"]
    if not (_numbers(curve.get("t"), MAX_RUN_S) and _numbers(curve.get("e"), MAX_READING_ABS)):
        raise ValueError("a device's curve is not two lists of plausible numbers")
    for k, v in curve.items():
        if k not in ("t", "e") and not (v is None or number(v, MAX_READING_ABS)):
            raise ValueError(f"a device's curve {k} is not a plausible number")


def timelines(run_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for p in Path(run_dir).iterdir():
        m = _TIMELINE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def read_timeline(path: Path, skipped: Optional[Skipped] = None) -> Iterator[dict[str, Any]]:
    """Records of a timeline.<k>.jsonl.gz, decompressed a chunk at a time: at most
    untrusted.MAX_GZIP_TEXT_BYTES of text (a gzip bomb is cut there, and counted as one
    damaged line) and MAX_LINE_BYTES a line. A damaged tail is skipped; damaged lines are
    counted in `skipped`."""
    try:
        reader = read_gzip_lines(path)
    except OSError:
        return
    for line in reader:
        rec = parse_record(line)
        if rec is not None:
            yield rec
        elif skipped is not None:
            skipped.lines += 1
    if skipped is not None:
        skipped.lines += reader.damaged


__all__ = ["SEGMENT_S", "SNAPSHOT", "capture", "condense", "read", "read_timeline",
           "records_after", "restore_device", "segments", "timelines", "write"]
