"""The front door: `track()` returns a Tracker, usable as a context manager or a decorator.

    with track("bert-finetune", region="DE") as run:
        with run.window("warmup"):
            warmup()
        train()
    print(run.summary)

All configuration is checked in the constructor (ConfigError with what to do); once started,
nothing the tracker does can raise into the training code.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import math
import operator
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

from . import __version__, signals
from .config import DEFAULT_RATE_HZ, TrackerConfig
from .errors import ConfigError
from .it_energy import frontier, it_energy_at
from .rundir import names
from .windows import Window

if TYPE_CHECKING:
    from .rundir.runlog import RunLog
    from .sampler import DeviceState, Sampler
    from .sensors.base import Sensor
    from .summary import Summary

# What a run needs once it starts (files, the sampler thread, summaries) is imported by
# start(): `from tracker import track` stays cheap, and so does a process that only
# configures a tracker.

log = logging.getLogger("tracker")

ENV_RUN_DIR = "ENERGY_TRACKER_RUN_DIR"   # set by `energy-tracker run` for callbacks to join
# Memory on long runs (see _compact): full resolution for the last RECENT_S, a point every
# SKELETON_S before that (plus every window edge), compacted every COMPACT_EVERY_S.
RECENT_S = 600.0
SKELETON_S = 300.0
COMPACT_EVERY_S = 60.0


def track(name: str = "run", **options: Any) -> Tracker:
    """Create a Tracker (see `Tracker` for the options). Start it with `with` or `.start()`."""
    return Tracker(name, **options)


class Tracker:
    """Measures one run: GPU, CPU and RAM energy, grid emissions, named windows, run logs.

    `Tracker(name="run", **options)`: `name` is the run name (used in the log directory name
    and emissions.csv `project_name`); the options are declared once in
    `tracker.config.TrackerConfig` (docs/options.md lists them, with their environment
    variables and `energy-tracker run` flags). An option given here wins over its
    ENERGY_TRACKER_* variable, which wins over the default; a misspelt option is a
    ConfigError naming the closest ones.

    Args:
        name: run name.
    """

    def __init__(self, name: str = "run", **options: Any):
        from .config import TrackerConfig

        self._setup(TrackerConfig.from_options(name, **options))

    @classmethod
    def from_config(cls, config: TrackerConfig) -> Tracker:
        """A Tracker for an already validated configuration."""
        tracker = cls.__new__(cls)
        tracker._setup(config)
        return tracker

    def _setup(self, config: TrackerConfig) -> None:
        """The parts of a tracker, from a validated configuration: the carbon factor (and
        region="auto" detected), the live provider, the exporters, the sensors."""
        from .carbon import make_live_intensity, resolve_factor
        from .exporters import make_hub

        self.config = config
        self.name = config.name
        # "user": the name was given; "command": `energy-tracker run` took the command's file
        # name, and a tracked script's own name replaces it (follow.joined_options)
        self.name_source = "user"
        self.pue = config.pue_value
        self.pue_source = config.pue_source
        self.rate_hz = config.rate_hz
        self.counter_interval_s = config.counter_interval_s
        self.summary_every_s = config.summary_every_s
        self.cpu_tdp_w = config.cpu_tdp_w
        self.gpus = list(config.gpus) if config.gpus is not None else None
        self.cpu, self.ram, self.node = config.cpu, config.ram, config.node
        self.powercap_root = config.powercap_root
        self.hwmon_root = config.hwmon_root
        self._given_sensors = list(config.sensors) if config.sensors is not None else None
        region = config.region
        if region is not None and region.strip().lower() == "auto":
            from .carbon.autodetect import detect_region
            region, how = detect_region()
            self.region_note: Optional[str] = f"region auto-detected as {region} from {how}"
        else:
            self.region_note = None
        self.region = region
        self.factor = resolve_factor(region, gco2_per_kwh=config.gco2_per_kwh, mix=config.mix,
                                     grid_year=config.grid_year)
        assert config.output_dir is not None   # from_options always sets it
        self.output_root = config.output_dir
        self._explicit_run_dir = config.run_dir
        # Last good live values are cached under the output root (never the token). The
        # provider is validated now; its thread starts with the run.
        self._live_kwargs = dict(config.live_options(),
                                 cache_dir=self.output_root / ".intensity-cache")
        self._live = make_live_intensity(config.live_intensity, self.factor, **self._live_kwargs)
        self.emissions_csv = config.emissions_csv
        # log_to was checked by the configuration; the tools' libraries are imported on use
        self._exporters = make_hub(config.log_to, config.log_every_steps,
                                   config.log_min_interval_s)
        self.prometheus_port = config.prometheus_port
        self._metrics_server: Any = None
        self.job_option = config.job
        self.job_timeout_s = config.job_timeout_s
        self._job: Any = None    # job.member.JobMember when this process is part of a job
        self.price = config.price
        self.report_html = config.report_html
        # Sensors are found now, so a bad gpus= entry fails here and not at start().
        self._sensors, self._discovery_notes = self._discover()

        import uuid
        self.run_id = str(uuid.uuid4())
        self.run_dir: Optional[Path] = None
        self.devices: list[DeviceState] = []
        self.notes: list[str] = [self.region_note] if self.region_note else []
        options_note = config.options_note()   # which options were given, and where
        if options_note:
            self.notes.append(options_note)
        self._ledger: Any = None                # ledger.Ledger: closed steps, settled
        self._lock = threading.Lock()           # the run's state (new, running, ...)
        self._stop_lock = threading.Lock()
        self._stopping_thread: Optional[int] = None
        self._pid: Optional[int] = None        # the process that started the run
        self._state = "new"
        self._final: Optional[Summary] = None      # what stop() returned (a job's: the job)
        # this process's own part, as its run directory holds it (in a job, a part of the job)
        self.own_summary: Optional[Summary] = None
        self._log: Optional[RunLog] = None
        self._sampler: Optional[Sampler] = None
        self._last_summary_write = 0.0
        self._last_compact = 0.0
        self._last_checkpoint = 0.0
        self._segment = 0                      # raw log segments rotated so far
        from .rundir.snapshot import SEGMENT_S
        self._segment_s = SEGMENT_S
        self._stop_hooks: list[Callable[[float], None]] = []
        self._origin = time.monotonic()
        self.clock: Callable[[], float] = lambda: time.monotonic() - self._origin
        from .windowbook import WindowBook
        hub = self._exporters   # log_to: progress at epoch ends, every log_every_steps steps
        # the clock and its origin are looked up when used: start() and joining reset them
        self._book = WindowBook(lambda: self.clock(), lambda: self._origin,
                                state=lambda: self._state,
                                anchor=self._request_anchor,
                                on_step=hub.step_closed if hub is not None else None,
                                on_window=hub.window_closed if hub is not None else None)
        self.joined = False
        self.start_wall = 0.0
        self._config = config.manifest()
        self._config["region"] = self.region   # what was used (region="auto" detected)
        self._sampling = {
            "rate_hz": self.rate_hz,
            "rate_source": "default" if self.rate_hz == DEFAULT_RATE_HZ else "user",
            "counter_interval_s": self.counter_interval_s,
            "counter_reads": "on schedule, at every window edge but steps, and at stop",
            "model_interval_s": 1.0}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Tracker:
        with self._lock:
            if self._state != "new":
                raise ConfigError("this tracker was already started; create a new one per run")
            self._state = "running"
        self._pid = os.getpid()
        joined = os.environ.get(ENV_RUN_DIR)
        if joined and self._explicit_run_dir is None and self._given_sensors is None:
            self._join(Path(joined))
            if self._exporters is not None:   # a joined script still logs its own tools
                self._exporters.start(self)
            return self
        sensors, notes = self._sensors, self._discovery_notes
        self.notes.extend(notes)
        for n in notes:
            log.info("energy-tracker: %s", n)
        from datetime import datetime, timezone

        from .rundir.runlog import RunLog, default_run_dir
        from .sampler import Sampler, Sampling, monotonic_clock

        self.start_wall = time.time()
        started = datetime.fromtimestamp(self.start_wall, tz=timezone.utc)
        try:
            sensors = self._join_job(sensors)
            self.run_dir = (self._job.run_dir if self._job is not None else
                            self._explicit_run_dir or default_run_dir(self.output_root,
                                                                      self.name, started))
            self._log = RunLog(self.run_dir, on_recreated=self._run_dir_recreated)
        except (ConfigError, OSError) as e:
            with self._lock:
                self._state = "new"
            if self._job is not None:
                self._job.release()
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"Cannot create the run directory under {self.output_root}: "
                              f"{e}. Pass output_dir= (CLI: --output-dir) with a writable "
                              "directory.") from None
        sampling = Sampling(sensors, interval_s=1.0 / self.rate_hz)
        self.devices = sampling.devices
        self._ledger = self._new_ledger(self.run_dir)
        if self._live is not None:
            self._live._on_update = self._on_intensity
        self._sampler = Sampler(sampling, clock=lambda: self.clock(),
                                after_tick=self._after_tick)
        # t=0 is the first reading: the sampler's first tick runs synchronously in start().
        from . import sampler as clock_source  # the system's clock, or a test's by hand
        origin = clock_source.monotonic_s()
        self._origin = origin
        self.clock = monotonic_clock(origin)
        self._sampler.start()
        self._log.write_manifest(self._manifest(origin))
        if self._live is not None:
            self._live.start(start_wall=self.start_wall, run_clock=lambda: self.clock())
        self._write_summary(self.clock(), status="running")
        if self.prometheus_port is not None:
            from .prometheus import serve
            try:
                self._metrics_server = serve(self, self.prometheus_port)
            except ConfigError as e:  # the run goes on; the endpoint is what failed
                self.notes.append(f"Prometheus endpoint not started: {e}")
                log.warning("energy-tracker: %s", e)
        if self._exporters is not None:
            self._exporters.start(self)
        atexit.register(self._stop_at_exit)
        signals.install(id(self), self._on_sigterm)
        return self

    def _join_job(self, sensors: list[Sensor]) -> list[Sensor]:
        """In a distributed job: find the job's directory and claim this process's devices
        (each device is measured by exactly one process of the job). Returns the sensors."""
        if self.job_option is False:
            return sensors
        from .job.identity import detect
        identity = detect(job=self.job_option if isinstance(self.job_option, str) else None)
        if identity is None:
            return sensors
        from .job.member import JobMember
        self._job, kept = JobMember.join(identity, list(sensors), output_root=self.output_root,
                                         name=self.name, run_dir=self._explicit_run_dir)
        self.notes.append(f"part of job {identity.job_id} ({identity.world_size} processes; "
                          f"id from {identity.source})")
        self.notes.extend(self._job.notes)
        return kept

    def _new_ledger(self, run_dir: Optional[Path]) -> Any:
        """The step and utilisation accounts (settled by the sampler thread; ledger.py)."""
        from .rundir.ledger import STEPS_FILE, Ledger, StepFile
        from .summary_build import marked_spans

        devices = self.devices
        return Ledger(lambda ts: it_energy_at(devices, ts), devices,
                      steps_file=StepFile(run_dir / STEPS_FILE) if run_dir is not None else None,
                      marked=lambda: marked_spans(self._book.snapshot()))

    def _owned(self) -> bool:
        """Is this the process that started the run? A forked child (a DataLoader worker,
        multiprocessing with fork) inherits the tracker but must not end the parent's run."""
        return self._pid is None or self._pid == os.getpid()

    def _stop_at_exit(self) -> None:
        """A tracker started but never stopped still gets its summary when Python exits."""
        if self._state == "running" and self._owned():
            self.notes.append("stopped at interpreter exit: stop() was never called")
            self.stop("interrupted")

    def _join(self, run_dir: Path) -> Tracker:
        """Follow the run that `energy-tracker run` is tracking instead of sampling again."""
        from .follow import LogFollower, joined_record
        from .rebuild import RecordedSensor, grid_factor
        from .rundir.names import MANIFEST, marks_file
        from .rundir.runlog import RunLog, read_json
        from .sampler import DeviceState, monotonic_clock
        from .sensors.base import SensorInfo

        manifest = read_json(run_dir / MANIFEST)
        if manifest is None:
            log.warning("energy-tracker: %s=%s has no run.json; tracking on our own",
                        ENV_RUN_DIR, run_dir)
            os.environ.pop(ENV_RUN_DIR, None)
            with self._lock:
                self._state = "new"
            return self.start()
        self.joined = True
        self.run_dir = run_dir
        self.run_id = manifest["run_id"]
        self.start_wall = manifest["start_wall"]
        self._origin = manifest["start_monotonic"]
        self.clock = monotonic_clock(self._origin)
        self.factor = grid_factor(manifest)
        self.pue, self.pue_source = manifest["pue"], manifest.get("pue_source", "user")
        asked = self._asked_of_the_run(manifest.get("config"))
        own_name, self.name = self.name, str(manifest.get("name") or self.name)
        # the same rule the run applies at its stop (follow.joined_options): one story
        from .follow import joined_options
        got = joined_options([asked], own=manifest.get("config") or {},
                             own_pue_given=self.pue_source == "user",
                             own_name_given=manifest.get("name_source", "user") == "user")
        self._apply_joined(got)
        self._live = None
        self.emissions_csv = False
        self.notes.append(f"joined run {self.run_id} tracked by `energy-tracker run` "
                          f"(pid {manifest['host'].get('pid')}): its sensors apply, and its "
                          "options where given on its command line; this process adds windows"
                          + (f" (this script named it {own_name!r})"
                             if self.name != own_name else ""))
        self.notes.extend(got.notes)
        self.devices = [DeviceState(RecordedSensor(SensorInfo(**d)))
                        for d in manifest.get("devices", [])]
        self._book.ids = itertools.count(os.getpid() * 1_000_000)  # unique among joined processes
        self._log = RunLog(run_dir, stream=marks_file(os.getpid()), exclusive=False)
        self._ledger = self._new_ledger(None)
        # Tell the parent who this process is (a rank of a job?) and what it asked for.
        identity = None
        if self.job_option is not False:
            from .job.identity import detect
            found = detect(job=self.job_option if isinstance(self.job_option, str) else None)
            identity = found.to_dict() if found is not None else None
        self._log.append(joined_record(identity, asked))
        follower = LogFollower(run_dir, self.devices, clock=self.clock,
                               after_tick=self._after_tick)
        self._sampler = follower  # type: ignore[assignment]  # a Sampler's interface
        follower.start()
        atexit.register(self._stop_at_exit)
        return self

    def _asked_of_the_run(self, run_config: Optional[dict[str, Any]] = None
                          ) -> dict[str, Any]:
        """What this script's own options ask of a run it joins (before the run's apply):
        its arguments and its own environment, not the environment it inherited from the
        process that tracks the run (that is the run's: config.own_options)."""
        own = self.config.own_options(run_config)
        asked: dict[str, Any] = {k: self._config.get(k) if k in own else None
                                 for k in ("region", "gco2_per_kwh", "mix")}
        if self.config.pue is not None and "pue" in own:
            asked["pue"] = self.config.pue
        if self.name != "run":          # track()'s default name asks for nothing
            asked["name"] = self.name
        return asked

    def stop(self, status: str = "finished") -> Summary:
        """Stop sampling, write summary.json and the emissions.csv row. Idempotent, thread-safe.
        Never raises for a measurement or disk problem: those are logged and noted. In a
        forked child of the process that started the run it changes nothing and returns the
        run's live summary (the parent's files stay the parent's)."""
        if not self._owned():
            return self._build(self.clock(), "running")
        with self._stop_lock:  # a second caller waits for the first and gets its summary
            if self._final is not None:
                return self._final
            with self._lock:
                if self._state == "new":
                    raise ConfigError("stop() called on a tracker that was never started")
                self._state = "stopping"
            self._stopping_thread = threading.get_ident()
            try:
                return self._stop(status)
            finally:
                self._stopping_thread = None
                signals.uninstall(id(self))   # may now deliver a SIGTERM that came meanwhile

    def _on_sigterm(self) -> bool:
        """SIGTERM: stop with status "terminated". True when this thread is already inside
        stop() (the handler interrupted it): that stop finishes first, then the signal acts."""
        if self._stopping_thread == threading.get_ident():
            return True
        if self._owned():
            self.stop("terminated")
        return False

    def _stop(self, status: str) -> Summary:
        assert self._sampler is not None and self._log is not None
        if not self._sampler.stop():
            self.notes.append("the sampler did not finish its last read within 5 s "
                              "(a hung driver?); the summary uses the data up to then")
        # The run ends at the final reading (not at the last device reading: a lost GPU's
        # curve ends early, and its missing energy is reported, not the run shortened).
        t_end = round(getattr(self._sampler, "last_tick_t", None) or self.clock(), 6)
        self._book.close_all(t_end)
        self._close_sensors()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        for hook in self._stop_hooks:
            try:
                hook(t_end)
            except Exception as e:  # an integration's bug must not lose the summary
                log.warning("energy-tracker: stop hook failed: %s", e)
        if self._live is not None:
            self._live.stop()
        self._drain_marks()
        if self._ledger is not None:
            self._ledger.finish()
        if not self.joined:
            self._merge_joined_marks()
        summary = self._build(t_end, status)
        if self.joined:  # the parent writes the run's files; ours are only our marks
            self._log.close()
        else:
            summary = self._write_final_files(summary, t_end)
        self._final = self.own_summary = summary
        with self._lock:
            self._state = "stopped"
        atexit.unregister(self._stop_at_exit)
        if self._job is not None:
            self._end_job()
            # every rank tells the job's story, not its own part of it (job/view.py)
            from .job.view import job_summary
            job = job_summary(self._job, own_end_wall=self.start_wall + t_end,
                              wait_s=self.job_timeout_s)
            if job is not None:
                self._final = summary = job
        if self._exporters is not None:   # after the files: summary.json is attached
            self._exporters.stop(self, summary)
        if self._prints_end_block():
            from .end_block import print_end_block
            print_end_block(summary)
        return summary

    def _prints_end_block(self) -> bool:
        """One short block on stderr per run (end_block.py): not with quiet; not from a
        script joined to `energy-tracker run` (the command prints it); in a job, only from
        the process that ended the job (it prints the job)."""
        if self.config.quiet or self.joined:
            return False
        return self._job is None or bool(getattr(self._job, "ended", False))

    def _end_job(self) -> None:
        """After this process's own files: end the job if it is the last to stop (bounded)."""
        try:
            root = self.output_root if self._explicit_run_dir is None else \
                self._job.job_dir.parent
            if isinstance(self.emissions_csv, Path):   # emissions_csv="x.csv": that file
                root = self.emissions_csv
            note = self._job.finish(timeout_s=self.job_timeout_s,
                                    csv_root=root if self.emissions_csv else None,
                                    report_html=self.report_html)
            if note:
                log.info("energy-tracker: %s", note)
        except Exception as e:  # the job summary can always be made later by `report`
            log.warning("energy-tracker: could not end the job (%s: %s); run `energy-tracker "
                        "report %s` to finish it", type(e).__name__, e, self._job.job_dir)

    def _write_final_files(self, summary: Summary, t_end: float) -> Summary:
        """summary.json, windows.json, the log's tail, the emissions row, then report.html;
        returns the summary as saved (with the report's path, or the note why there is none)."""
        import dataclasses

        from .report import auto
        from .rundir.runlog import upsert_emissions_row
        from .summary_build import emissions_row

        assert self._log is not None and self.run_dir is not None
        # a job member's page is the job's (job/member.py end_job draws it)
        html, note = auto.plan(self.report_html, summary.status, self.run_dir) \
            if self._job is None else (False, None)
        if note:
            summary = dataclasses.replace(summary, notes=(*summary.notes, note))
        if html:
            summary = dataclasses.replace(summary,
                                          report_html=str(self.run_dir / names.REPORT_HTML))

        def attempt(what: str, do: Callable[[], Any]) -> None:
            # Each file on its own: a summary that cannot be written must not cost the log's
            # last lines or the emissions row (and a full disk must not become a traceback).
            try:
                do()
            except Exception as e:
                log.error("energy-tracker: could not write %s: %s: %s", what,
                          type(e).__name__, e)

        runlog = self._log
        assert runlog is not None   # started
        attempt(names.SUMMARY, lambda: runlog.write_summary(summary.to_dict()))
        attempt(names.WINDOWS, lambda: self._write_windows_file(summary, t_end))
        attempt(names.SAMPLES, runlog.close)
        if self.emissions_csv and self._job is None:   # a job writes one row, at its end
            root = self.run_dir.parent if self._explicit_run_dir else self.output_root
            if isinstance(self.emissions_csv, Path):   # emissions_csv="x.csv": that file
                root = self.emissions_csv
            attempt("the emissions.csv row",
                    lambda: upsert_emissions_row(root, emissions_row(summary,
                                                                     self._manifest_cache)))
        if html:
            data = summary.to_dict()
            if auto.write(self.run_dir, data, self._log.write_summary) is None:
                summary = dataclasses.replace(summary, report_html=None,
                                              notes=tuple(data["notes"]))
        return summary

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        # Never swallow or replace the user's exception, whatever it does (even a __str__
        # that raises); and only the process that started the run ends it.
        if not self._owned():
            return False
        status = "finished"
        try:
            if exc_type is None:
                pass
            elif issubclass(exc_type, KeyboardInterrupt):
                status = "interrupted"
            elif issubclass(exc_type, SystemExit) and exc is not None and exc.code in (0, None):
                self.notes.append("the tracked code called sys.exit(0)")
            else:
                status = "failed"
                self.notes.append(f"the tracked code raised {_describe(exc_type, exc)}")
        finally:
            self.stop(status)
        return False

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Use as a decorator: each call of `func` is its own run with this configuration."""
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)
        return wrapper

    def _fresh(self) -> Tracker:
        return Tracker.from_config(self.config)

    # -- windows -------------------------------------------------------------------------------
    @contextmanager
    def window(self, name: str, kind: str = "phase", **attrs: Any) -> Iterator[Window]:
        """A named window (nestable). Its energy is E(t_end) - E(t_start) on every device."""
        w = self.begin_window(name, kind, **attrs)
        try:
            yield w
        finally:
            self.end_window(w)

    def begin_window(self, name: str, kind: str = "phase", *, anchor: Optional[bool] = None,
                     parent: Optional[Window] = None, **attrs: Any) -> Window:
        """Open a window now. `anchor` (default: True except for steps) asks the sampler for an
        immediate counter read so the edge is exact; steps are interpolated instead.

        `attrs` are kept with the window (summary.json, windows.json). Two have a meaning:
        `samples=` and `tokens=` (ints) on a `kind="step"` window are its sample and token
        counts, summed into the run's J/sample and J/token; they may also be given (or
        corrected) to `end_window(w, samples=..., tokens=...)`. For a loop, `step()` and
        `steps()` do this with less work per step."""
        return self._book.begin(name, kind, anchor=anchor, parent=parent, **attrs)

    def end_window(self, w: Window, *, anchor: Optional[bool] = None, **attrs: Any) -> None:
        """Close `w` now; `attrs` are added to its own (e.g. `samples=`/`tokens=` of a step)."""
        self._book.end(w, anchor=anchor, **attrs)

    def _request_anchor(self) -> None:
        if self._sampler is not None:
            self._sampler.request_anchor()

    def epochs(self, iterable: Iterable[Any], total: Optional[int] = None) -> Iterable[Any]:
        """Iterate epochs, each in an "epoch" window named "epoch <i>" (i from 0 each pass).

        Like `steps`, it returns the iterable itself for everything but iteration: `len()`
        and attributes are the iterable's. `total` is accepted for compatibility (unused)."""
        from .windowbook import Steps

        return Steps(iterable, self._epoch_pass)

    def _epoch_pass(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for i, item in enumerate(iterable):
            with self.window(f"epoch {i}", kind="epoch", index=i):
                yield item

    def steps(self, iterable: Iterable[Any], *, samples: Any = None, tokens: Any = None,
              synchronize: Optional[Callable[[], None]] = None) -> Any:
        """Iterate training steps, each item in a "step" window (interpolated on E(t), see
        README). Returns a thin wrapper that is still `iterable` for the code it is passed to:

            train(args, model, device, run.steps(train_loader), optimizer, epoch)

        `len()`, truthiness and attributes (`.dataset`, `.batch_size`,
        `.sampler.set_epoch(e)`) are the loader's; each `for` over it is a new pass, so one
        wrapper serves every epoch; `next()`/`.close()` drive a pass of its own.

        `samples`/`tokens`: the batch's sample/token count for J/sample and J/token: an int
        (the same for every batch) or a function of the batch (e.g.
        `samples=lambda b: len(b[0])`); a function that raises counts 0 and is logged, the
        loop goes on. `synchronize`: called at each step edge (e.g. torch.cuda.synchronize),
        so a step's GPU work lands in its own window; off by default because it costs speed.
        For a loop that is not an iterable, use `step()`.
        """
        from .windowbook import Steps, check_counter

        check_counter("samples", samples)
        check_counter("tokens", tokens)
        if not hasattr(iterable, "__iter__") and not hasattr(iterable, "__getitem__"):
            raise ConfigError(f"steps() takes an iterable (a DataLoader, a range, a list...), "
                              f"got {iterable!r} ({type(iterable).__name__})")
        return Steps(iterable, functools.partial(self._book.iter_steps, samples=samples,
                                                 tokens=tokens, synchronize=synchronize))

    # `run.step(samples=0, tokens=0, *, index=None, synchronize=None)`: the window book's
    # context factory, reached through C code only (property(attrgetter)), so that a step
    # costs the training thread what a step of `steps()` costs (scripts/bench_steps.py)
    step = property(operator.attrgetter("_book.step"), doc="""One training step as a context
        manager, for loops that are not iterables:

            while True:                      # nanoGPT
                with run.step(samples=batch_size, tokens=batch_size * block_size):
                    ...forward, backward, optimizer step...

        `run.step(samples=0, tokens=0, *, index=None, synchronize=None)`. `samples`/`tokens`
        (ints >= 0) are the step's counts for J/sample and J/token; they can also be set
        inside the block (`with run.step() as s: ...; s.tokens = n`). `index`: the step's
        number (default: 0, 1, 2... across the run). `synchronize` as for `steps()`. Inside
        another window (an epoch) the step is its child. On a stopped tracker the block runs
        untracked; an exception in it closes the step and propagates untouched. A count that
        is not an int >= 0 is a ConfigError at the call. Costs the training thread about what
        a step of `steps()` costs (scripts/bench_steps.py).""")

    # -- results -------------------------------------------------------------------------------
    @property
    def summary(self) -> Summary:
        """The final summary once stopped; a live snapshot while running."""
        if self._final is not None:
            return self._final
        if self._state == "new":
            raise ConfigError("the tracker has not started yet")
        return self._build(self.clock(), "running")

    def energy_j(self, t0: Optional[float] = None, t1: Optional[float] = None) -> float:
        """IT energy (J) between two run times (s); default the whole run so far. Exact (to
        the curve) at the run's start and end, at window edges and for the last 10 minutes;
        at other times older than that, interpolated between points 5 minutes apart."""
        t1 = self.clock() if t1 is None else t1
        t0 = 0.0 if t0 is None else t0
        from .sensors.base import counted
        return sum(d.curve.energy_between(t0, t1) for d in self.devices
                   if not d.curve.empty and counted(d.sensor.info.details))

    def recent_power_w(self, span_s: Optional[float] = None) -> Optional[float]:
        """IT power now (W): the mean over the last 2 s that every device has measured (a
        node meter's parts once), as the CLI's status line and Prometheus show it. None before
        the first reading."""
        from .curve import RECENT_POWER_S
        from .sensors.base import counted
        until = self.measured_until()
        got = [d.curve.recent_power_w(until, RECENT_POWER_S if span_s is None else span_s)
               for d in self.devices if not d.curve.empty and counted(d.sensor.info.details)]
        known = [w for w in got if w is not None]
        return sum(known) if known else None

    def measured_until(self) -> float:
        """Run time (s) up to which every measured device has readings. E(t) is flat past a
        device's last reading, so rates up to `clock()` would read low."""
        ends = [e for d in self.devices if (e := d.curve.end) is not None]
        now = self.clock()
        return min(min(ends), now) if ends else now

    def emissions_kg(self, t0: float = 0.0, t1: Optional[float] = None) -> float:
        """CO2e (kg) of the facility energy between two run times, with live intensity periods
        when a live provider is on, else the run's grid factor."""
        from .carbon import account_emissions

        t1 = self.measured_until() if t1 is None else t1
        periods = self._live.periods() if self._live is not None else None
        return account_emissions(lambda wall: self.pue * self.energy_j(0.0, wall - self.start_wall),
                                 self.start_wall + t0, self.start_wall + t1, self.factor,
                                 periods or None).emissions_g / 1000.0

    def job_totals(self, timeout_s: float = 60.0) -> Any:
        """The whole job's energy and emissions so far (`tracker.job.totals.JobTotals`): one
        all-reduce over the program's initialised process group. A collective: call it on
        every process of the job at the same point. Without a group: this process's own."""
        from .job.totals import job_totals
        return job_totals(self, timeout_s=timeout_s)

    def on_stop(self, hook: Callable[[float], None]) -> None:
        """Call `hook(t_end)` inside stop(), after the final reading and before the summary is
        built (e.g. to note a projection against the final energy in `notes`)."""
        self._stop_hooks.append(hook)

    # -- internals -----------------------------------------------------------------------------
    def _discover(self) -> tuple[list[Sensor], list[str]]:
        """Every registered sensor kind's devices (tracker/sensors/registry.py)."""
        if self._given_sensors is not None:
            return list(self._given_sensors), []
        from .sensors import registry
        found = registry.discover(registry.Options(
            gpus=self.gpus, cpu=self.cpu, ram=self.ram, node=self.node,
            cpu_tdp_w=self.cpu_tdp_w, powercap_root=self.powercap_root,
            hwmon_root=self.hwmon_root, counter_interval_s=self.counter_interval_s))
        return list(found.sensors), list(found.notes)

    def _manifest(self, origin: float) -> dict[str, Any]:
        import platform
        import socket

        import psutil

        from .redact import redact_argv
        from .rundir.liveness import owner_identity
        from .summary import utc_iso
        argv, redacted = redact_argv(sys.argv)
        self._manifest_cache = {
            "schema": 1,
            "run_id": self.run_id, "name": self.name, "name_source": self.name_source,
            "started_utc": utc_iso(self.start_wall), "start_wall": self.start_wall,
            "start_monotonic": origin,
            "host": {"hostname": socket.gethostname(), "os": platform.platform(),
                     "python": platform.python_version(), "cpu_model": _cpu_model(),
                     "cpu_count": os.cpu_count(),
                     "ram_total_gb": round(psutil.virtual_memory().total / 1e9, 3),
                     "pid": os.getpid(), "argv": argv,
                     # values after secret-looking flags and token-shaped values are removed
                     # (run.json is shared): how many
                     "argv_redacted": redacted,
                     # so that a reader can prove this process gone (liveness.py)
                     **owner_identity()},
            "devices": [d.sensor.info.to_dict() for d in self.devices],
            "grid": self.factor.to_dict(),
            "pue": self.pue, "pue_source": self.pue_source,
            "config": dict(self._config, sampling=self._sampling),
            "notes": list(self.notes),
            **({"job": self._job.manifest()} if self._job is not None else {}),
            "versions": {"energy_tracker": __version__, "nvidia_ml_py": _version("nvidia-ml-py"),
                         "psutil": _version("psutil")},
        }
        return self._manifest_cache

    def _on_intensity(self, period: Any) -> None:
        if self._log is not None:
            self._log.append({"t": round(self.clock(), 6), "intensity": period.to_dict()})

    def _close_sensors(self) -> None:
        """Release sensor handles (files, NVML) once the final reading is taken."""
        for d in self.devices:
            try:
                d.sensor.close()
            except Exception as e:
                log.debug("energy-tracker: closing %s: %s", d.sensor.name, e)

    def _merge_joined_marks(self) -> None:
        """Windows that processes joined to this run (callbacks in the child) recorded, once per
        job window when several ranks joined; the job and grid they asked for."""
        from .follow import joined_windows, read_joined

        assert self.run_dir is not None
        procs = read_joined(self.run_dir)
        if not procs:
            return
        with self._book.lock:
            self._book.windows += joined_windows(procs)
        self._adopt_joined_config([p.config for p in procs])
        ranks = sorted({int(p.identity["rank"]) for p in procs
                        if p.identity and p.identity.get("rank") is not None})
        multi = [p.identity for p in procs if p.identity]
        if self._job is not None:
            self._job.ranks = ranks or self._job.ranks
        elif multi:
            self._adopt_job(multi[0], ranks)

    def _adopt_joined_config(self, configs: list[dict[str, Any]]) -> None:
        """The tracked script's own region/PUE apply when `energy-tracker run` was given none."""
        from .follow import joined_options

        got = joined_options(configs, own=self._config, own_pue_given=self.pue_source == "user",
                             own_name_given=self.name_source == "user")
        self._apply_joined(got)
        self.notes.extend(got.notes)

    def _apply_joined(self, got: Any) -> None:
        """What follow.joined_options decided applies to this run (both sides of a join)."""
        if got.factor is not None:
            self.factor = got.factor
        if got.pue is not None:
            self.pue, self.pue_source = got.pue, "user (from the tracked script)"
        if got.name is not None:
            self.name = got.name

    def _adopt_job(self, identity: dict[str, Any], ranks: list[int]) -> None:
        """Several ranks of a job joined this run (`energy-tracker run -- torchrun ...`): the
        run becomes this node's part of the job directory."""
        from dataclasses import fields

        from .job.identity import JobIdentity
        from .job.member import JobMember

        assert self.run_dir is not None and self._log is not None
        known = {f.name for f in fields(JobIdentity)}
        try:
            ident = JobIdentity(**{k: v for k, v in identity.items() if k in known})
            member = JobMember.adopt(ident, self.run_dir, output_root=self.output_root,
                                     name=self.name, ranks=ranks)
        except (TypeError, OSError) as e:
            self.notes.append(f"the joined processes belong to a job, but this run could not "
                              f"join its directory ({e})")
            return
        if member is None:
            return
        self._job = member
        self.run_dir = self._log.dir = member.run_dir
        self.notes.append(f"ranks {', '.join(map(str, ranks))} of job {ident.job_id} joined "
                          "this run; it is this node's part of the job")
        self._log.write_manifest(self._manifest(self._manifest_cache["start_monotonic"]))

    def _drain_marks(self, ticks: Sequence[dict[str, Any]] = ()) -> None:
        """Move pending window marks to the log (sampler thread), in time order with the tick
        records of `ticks`. Closed steps go in one record per round: a JSON line per step edge
        would cost the training thread GIL time."""
        log_ = self._log
        marks = list(self._book.take_marks())
        if log_ is not None:
            # stable: a mark and a tick at one time keep the mark first, as when each tick
            # drained the marks made before it
            for rec in sorted(marks + list(ticks), key=_record_t) if marks else ticks:
                log_.append(rec)
        batch = self._book.take_steps()
        if batch is not None:
            # The ledger appends them to steps.bin at once (the durable record); a process
            # joined to another's run has no steps file and logs them for that process.
            if self._ledger is not None:
                self._ledger.add_steps(batch)
            if self.joined and log_ is not None:
                rows = [(next(self._book.ids), *r[1:]) for r in batch.rows()]   # unique ids
                log_.append({"t": rows[-1][3], "steps": rows})

    # Tick records waiting for the sampler thread's next round of bookkeeping (_after_tick).
    _pending_ticks: Optional[list[dict[str, Any]]] = None
    _last_round_t = -math.inf

    def _after_tick(self, record: dict[str, Any], t: float) -> None:
        """Runs on the sampler thread after each tick: keeps its record, and every
        runlog.FLUSH_EVERY_S (every tick in the run's first EAGER_FLUSH_S, and at the final
        tick) logs the records and marks, settles steps, flushes, refreshes summary.json.
        Between rounds nothing is on disk that a round would not have flushed anyway, so a
        SIGKILL loses what it lost before (<= FLUSH_EVERY_S), while the 10 Hz ticks in
        between cost a list append (a tick on a cold cache costs ~0.1-0.3 ms a round)."""
        from .rundir.runlog import EAGER_FLUSH_S, FLUSH_EVERY_S
        assert self._log is not None
        pending = self._pending_ticks
        if pending is None:
            pending = self._pending_ticks = []
        # Every tick is logged, readings or not: the last line tells how far a killed run got.
        pending.append(record if record["d"] else {"t": record["t"]})
        if (t - self._last_round_t < FLUSH_EVERY_S and t >= EAGER_FLUSH_S
                and "final" not in record):
            return
        self._last_round_t = t
        self._pending_ticks = []
        self._drain_marks(pending)
        if self._ledger is not None:
            self._ledger.advance(frontier(self.devices))
            if t - self._last_compact >= COMPACT_EVERY_S:
                self._compact(t)
            if t - self._last_checkpoint >= self._segment_s:
                self._checkpoint(t)
        if self._log.flush_if_due(t) and self._ledger is not None and self._ledger.file:
            self._ledger.file.flush()
        if self._job is not None and self._job.later:
            self._add_late_claims(t)
        if signals.poll():   # SIGTERM while the main thread may be stuck in a collective
            signals.stop_all_from_thread()
        if (t - self._last_summary_write >= self.summary_every_s and self._state == "running"
                and not self.joined):
            self._write_summary(t, "running")

    def _run_dir_recreated(self) -> None:
        """The run directory was deleted mid-run and has just been made again (sampler
        thread): rewrite what memory still has, say once what was lost."""
        note = ("the run directory was deleted during the run and recreated: samples.jsonl "
                "and steps.bin hold only what came after; summary.json is written from "
                "memory and has the whole run")
        if note not in self.notes:
            self.notes.append(note)
        log.warning("energy-tracker: %s (%s)", note, self.run_dir)
        if self._ledger is not None and self._ledger.file is not None:
            self._ledger.file.reopen()
        cache = getattr(self, "_manifest_cache", None)
        if cache is not None:
            self._log.write_manifest(self._manifest(cache["start_monotonic"]))  # type: ignore
        self._write_summary(self.clock(), "running")

    def _compact(self, t: float) -> None:
        """Keep memory flat on long runs (sampler thread): curves older than RECENT_S and
        settled by the ledger keep a point every SKELETON_S plus every window edge and
        intensity-period boundary, so totals, windows and emissions stay exact (curve.py)."""
        self._last_compact = t
        assert self._ledger is not None and self.run_dir is not None
        if any(self.run_dir.glob(names.MARKS_GLOB)):
            return   # processes joined this run: their window edges are only known at stop
        queued = self._book.steps.t0
        until = min(t - RECENT_S, self._ledger.settled_before(),
                    min(queued) if len(queued) else math.inf)
        pins = self._book.edges()
        if self._live is not None:
            pins += [x - self.start_wall for p in self._live.periods()
                     for x in (p.start_wall, p.end_wall) if x is not None]
        for d in list(self.devices):
            d.curve.compact(min(until, d.curve.final_until()), pins, SKELETON_S)

    def _checkpoint(self, t: float) -> None:
        """Bound the disk and make rebuilds fast (sampler thread, every SEGMENT_S): rotate the
        raw log, write a snapshot of the whole state, condense the rotated segment into a 1 s
        timeline in the background (snapshot.py)."""
        from .rundir import snapshot

        self._last_checkpoint = t
        assert self._log is not None and self.run_dir is not None
        if self.joined or any(self.run_dir.glob(names.MARKS_GLOB)):
            return   # processes follow this run's log by its offset: keep it whole
        self._compact(t)
        k = self._segment
        raw = self._log.rotate(k)
        self._segment += 1
        if self._ledger is not None and self._ledger.file is not None:
            self._ledger.file.flush()
        snapshot.write(self.run_dir, snapshot.capture(
            t=t, segment=k, devices=list(self.devices), ledger=self._ledger,
            windows=self._book.snapshot(), t_last=t,
            periods=self._live.periods() if self._live is not None else []))
        out = self.run_dir / names.timeline_file(k)
        threading.Thread(target=_condense, args=(raw, out), name="energy-tracker-condense",
                         daemon=True).start()

    def _add_late_claims(self, t: float) -> None:
        """GPUs no other process of the job claimed: measure them from now (sampler thread)."""
        assert self._sampler is not None and self._log is not None
        added = self._job.late_claims(t)
        if not added and self._job.later:
            return   # not yet due
        for sensor in added:
            self._sampler.sampling.add(sensor)
        self.notes[:] = list(dict.fromkeys(self.notes + self._job.notes))
        cache = getattr(self, "_manifest_cache", None)
        if cache is not None:
            self._log.write_manifest(self._manifest(cache["start_monotonic"]))

    def _write_summary(self, t: float, status: str) -> None:
        self._last_summary_write = t
        if self._log is not None:
            self._log.write_summary(self._build(t, status).to_dict())

    def _build(self, t_end: float, status: str) -> Summary:
        from .summary_build import build_summary

        periods = self._live.periods() if self._live is not None else None
        live_status = self._live.status() if self._live is not None else None
        windows = self._book.snapshot()
        ledger = self._ledger
        n_closed_steps = ((ledger.count + ledger.pending if ledger is not None else 0)
                          + self._book.steps_in_flight())
        notes = list(self.notes)
        if self._sampler is not None:
            notes += [f"sampler: {e}" for e in self._sampler.callback_errors]
        return build_summary(
            run_id=self.run_id, name=self.name, status=status, start_wall=self.start_wall,
            t_end=t_end, devices=self.devices, windows=windows, factor=self.factor,
            periods=periods, live_status=live_status, pue=self.pue, pue_source=self.pue_source,
            notes=notes, run_dir=str(self.run_dir) if self.run_dir else None,
            closed_steps=n_closed_steps, sampling=self._sampling,
            elsewhere=self._job.elsewhere() if self._job is not None else (), price=self.price,
            ledger=ledger if status != "running" else None)

    def _write_windows_file(self, summary: Summary, t_end: float) -> None:
        """windows.json: the windows (steps are in steps.bin) and the step groups."""
        from .rundir.ledger import COLUMNS, STEPS_FILE
        from .rundir.runlog import write_json_atomic
        write_json_atomic(self.run_dir / names.WINDOWS,  # type: ignore[operator]
                          {"note": "window energies are E(t_end)-E(t_start) on the interpolated "
                                   "energy curve; short steps are not measured alone",
                           "windows": [w.to_dict() for w in summary.windows],
                           "step_groups": summary.steps.get("groups", []),
                           "steps_file": {
                               "path": STEPS_FILE,
                               "format": "blocks: b'STB1', uint32 n, then n values of each "
                                         "column (little-endian); read with "
                                         "tracker.rundir.ledger.read_steps",
                               "columns": [f"{name}:{code}" for name, code in COLUMNS]}})


def _condense(raw: Path, out: Path) -> None:
    """A rotated raw segment -> its condensed timeline, then deleted (own thread)."""
    from .rundir.snapshot import condense
    try:
        condense(raw, out)
        raw.unlink()
    except Exception as e:   # the raw segment stays: a report still reads it
        log.warning("energy-tracker: could not condense %s: %s", raw.name, e)


def _describe(exc_type: Any, exc: Any, limit: int = 500) -> str:
    """ "TypeName: message", the message cut to `limit` characters; never raises (an
    exception's own __str__ may)."""
    try:
        text = str(exc)
    except Exception:
        text = "(its message could not be read)"
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit} more characters)"
    return f"{getattr(exc_type, '__name__', 'Exception')}: {text}"


def _record_t(rec: dict[str, Any]) -> float:
    return float(rec["t"])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def _version(dist: str) -> Optional[str]:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return None


__all__ = ["ENV_RUN_DIR", "Tracker", "track"]


def _declare_options() -> None:
    """`Tracker(...)` and `track()` take `**options`, checked by TrackerConfig; the typed
    signature and the docstring that inspect, IDEs and jsonargparse read are derived from the
    one declaration of the options (config.TrackerConfig)."""
    from .config import options_docstring, signature_with_options

    init: Any = Tracker.__init__
    init.__signature__ = signature_with_options(Tracker.__init__)
    tracked: Any = track
    tracked.__signature__ = signature_with_options(track)
    Tracker.__doc__ = (Tracker.__doc__ or "").rstrip() + "\n" + options_docstring() + "\n    "


_declare_options()
