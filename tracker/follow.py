"""Joining a run tracked by another process (`energy-tracker run -- python train.py`).

A callback inside the child must not start a second sampler (double counting). Instead the
child follows the parent's samples.jsonl: `LogFollower` tails it and rebuilds the same energy
curves, so the child can log live energy next to its loss, and it writes its own windows to
marks-<pid>.jsonl, which the parent merges into the run's summary at stop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .rundir import names
from .rundir.names import SAMPLES
from .rundir.runlog import parse_record
from .rundir.untrusted import LineReader, number, open_regular
from .sampler import DeviceState, apply_reading


class LogFollower:
    """Same interface as Sampler (start/request_anchor/stop), fed by the parent's log file."""

    def __init__(self, run_dir: Path, devices: list[DeviceState], *,
                 clock: Callable[[], float],
                 after_tick: Callable[[dict[str, Any], float], None],
                 on_intensity: Optional[Callable[[dict[str, Any]], None]] = None,
                 interval_s: float = 0.5):
        self._path = Path(run_dir) / SAMPLES
        self._devices = {d.sensor.name: d for d in devices}
        self._clock = clock
        self._after_tick = after_tick
        self._on_intensity = on_intensity
        self._interval = interval_s
        self._offset = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="energy-tracker-follower",
                                        daemon=True)
        self.callback_errors: list[str] = []

    def start(self) -> None:
        # A long run's earlier log may already be condensed: start from its snapshot, then
        # read the live log (which begins right after it) from the top.
        from .rundir import snapshot
        snap = snapshot.read(self._path.parent)
        if snap is not None:
            for name, state in snap["devices"].items():
                if name in self._devices:
                    try:
                        snapshot.restore_device(self._devices[name], state)
                    except (KeyError, TypeError, ValueError):
                        pass
        self.poll()
        self._thread.start()

    def request_anchor(self) -> None:
        """The parent's sampler owns the counters; nothing to read here."""

    def stop(self, timeout_s: float = 5.0) -> bool:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self.poll()
        return not self._thread.is_alive()

    def _apply(self, rec: dict[str, Any], reading_of: Callable[[Any], dict[str, float]]
               ) -> None:
        t = float(rec["t"])
        d = rec.get("d", {})
        for name, got in (d.items() if isinstance(d, dict) else ()):
            dev = self._devices.get(name)
            if dev is not None:
                try:
                    reading = reading_of(got)
                except ValueError:
                    continue
                apply_reading(dev, t, reading, final=False)
        if "intensity" in rec and self._on_intensity is not None:
            self._on_intensity(rec["intensity"])

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def poll(self) -> None:
        """Apply every complete line appended since the last poll."""

        from .rundir.records import checked_reading
        with self._lock:
            try:
                with open_regular(self._path) as f:
                    f.seek(self._offset)
                    # streamed in chunks, each line bounded: the parent's file is not ours
                    reader = LineReader(f)
                    try:
                        for line in reader:
                            rec = parse_record(line)
                            if rec is None:   # a damaged line: the lines after it still count
                                continue
                            self._apply(rec, checked_reading)
                    finally:   # what was read is never read (and applied) twice
                        self._offset += reader.consumed
                self._after_tick({"t": self._clock(), "d": {}}, self._clock())
            except Exception as e:  # the parent's file is the parent's business: never raise
                msg = f"{type(e).__name__}: {e}"
                if msg not in self.callback_errors:
                    self.callback_errors.append(msg)


@dataclass
class JoinedProcess:
    """A process that joined the run: who it is (its job identity, if any), the options it
    asked for, and the windows it recorded (marks-<pid>.jsonl)."""

    pid: int
    identity: Optional[dict[str, Any]] = None
    config: dict[str, Any] = field(default_factory=dict)
    windows: dict[int, Any] = field(default_factory=dict)

    @property
    def rank_key(self) -> tuple[int, int, int]:
        """(restart, rank, pid): sorts processes of one attempt by rank."""
        ident = self.identity or {}
        rank = ident.get("rank")
        return (int(ident.get("restart") or 0), int(rank) if rank is not None else 1 << 30,
                self.pid)


def joined_record(identity: Optional[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """First record of a joined process's marks file."""
    import os
    return {"t": 0.0, "joined": {"pid": os.getpid(), "identity": identity, "config": config}}


def read_joined(run_dir: Path) -> list[JoinedProcess]:
    """Every process that joined this run, from its marks file."""
    from .rundir.records import apply_window_record
    from .rundir.runlog import read_samples

    out = []
    for path in sorted(Path(run_dir).glob(names.MARKS_GLOB)):
        try:
            pid = int(path.stem.split("-", 1)[1])
        except ValueError:
            continue
        proc = JoinedProcess(pid)
        for rec in read_samples(path):
            try:
                if "joined" in rec:
                    j = rec["joined"] or {}
                    ident = j.get("identity")
                    proc.identity = _identity(ident) if isinstance(ident, dict) else None
                    config = j.get("config") or {}
                    proc.config = dict(config) if isinstance(config, dict) else {}
                else:
                    apply_window_record(proc.windows, rec)
            except (TypeError, ValueError, KeyError, AttributeError):
                continue   # a damaged line of another process's marks: that line only
        out.append(proc)
    return sorted(out, key=lambda p: p.rank_key)


def _identity(ident: dict[str, Any]) -> dict[str, Any]:
    """A joined process's identity as its marks file says, with rank and restart dropped when
    they are not plausible integers (they order the processes)."""
    out = dict(ident)
    for k in ("rank", "restart"):
        if out.get(k) is not None and not (out[k].__class__ is int and number(out[k], 1 << 30)
                                           and out[k] >= 0):
            out[k] = None
    return out


def joined_windows(processes: list[JoinedProcess]) -> list[Any]:
    """Windows of the joined processes as the run's windows: when several ranks of a job
    joined, each window once (the lowest rank's edges, the others' spread in its attrs) and
    steps once (samples and tokens summed over ranks), per attempt."""
    from .job.align import align_windows

    by_attempt: dict[int, dict[tuple[int, int, int], list[Any]]] = {}
    for p in processes:
        by_attempt.setdefault(p.rank_key[0], {})[p.rank_key] = list(p.windows.values())
    out: list[Any] = []
    for restart in sorted(by_attempt):
        out += align_windows(by_attempt[restart])
    return out


GRID_OPTIONS = ("region", "gco2_per_kwh", "mix")


@dataclass
class JoinedOptions:
    """What the joined scripts asked for that applies to the run: a grid factor, a PUE."""

    factor: Any = None
    pue: Optional[float] = None
    name: Optional[str] = None
    notes: list[str] = field(default_factory=list)


def joined_options(configs: list[dict[str, Any]], *, own: dict[str, Any],
                   own_pue_given: bool, own_name_given: bool = True) -> JoinedOptions:
    """The one precedence rule for options given both to `energy-tracker run` and to the
    tracked script's `track()`/callback: an option given on the command line applies; one
    the command line left at its default is the script's (when the joined scripts agree).
    That covers the grid (`region=`/`gco2_per_kwh=`/`mix=`), `pue=` and the run's name.
    Both sides apply this same function: the script when it joins, the run at its stop, so
    the two summaries tell one story."""
    from .carbon import resolve_factor
    from .errors import ConfigError

    out = JoinedOptions()
    names = {str(n) for c in configs if (n := c.get("name"))}
    if names and not own_name_given and len(names) == 1:
        out.name = names.pop()
        out.notes.append(f"run name {out.name!r} from the tracked script (`energy-tracker "
                         "run` was given no --name)")
    asking = [c for c in configs if any(c.get(k) is not None for k in GRID_OPTIONS)]
    distinct = {tuple(repr(c.get(k)) for k in GRID_OPTIONS) for c in asking}
    if asking:
        c = asking[0]
        own_none = all(own.get(k) is None for k in (*GRID_OPTIONS, "live_intensity"))
        if own_none and len(distinct) == 1:
            try:
                out.factor = resolve_factor(c.get("region"), gco2_per_kwh=c.get("gco2_per_kwh"),
                                            mix=c.get("mix"))
                out.notes.append(f"grid factor from the tracked script's own options "
                                 f"({out.factor.region_code}); `energy-tracker run` was given "
                                 "none")
            except ConfigError as e:
                out.notes.append(f"the tracked script's grid options were not usable: {e}")
        elif len(distinct) > 1 or any(c.get(k) != own.get(k) for k in GRID_OPTIONS):
            out.notes.append("the tracked script asked for other grid options "
                             f"({c.get('region') or c.get('gco2_per_kwh') or c.get('mix')}) than "
                             "`energy-tracker run`'s, which apply")
    pues = {float(p) for c in configs if number(p := c.get("pue"), 100.0)}
    if pues and not own_pue_given and len(pues) == 1:
        out.pue = pues.pop()
    return out
