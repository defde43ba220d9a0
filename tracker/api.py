"""The front door: `track()` returns a Tracker, usable as a context manager or a decorator.

    with track("bert-finetune", region="DE") as run:
        with run.window("warmup"):
            warmup()
        train()
    print(run.summary)

All configuration is checked in the constructor (ConfigError with what to do); once started,
nothing the tracker does can raise into the training code. The Tracker runs the lifecycle
(what a run needs once it starts is imported by start(): `import tracker` stays cheap); its
other jobs have modules of their own, named in the methods that call them.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

from . import signals
from .assembly import close_sensors, declare_options, discover_sensors, sensor_stop_hooks
from .config import TrackerConfig
from .errors import ConfigError
from .final_files import print_end_block_if_due, write_final_files
from .job.participation import end_job, open_run_dir
from .joining import ENV_RUN_DIR, follow, merge_joined_marks, open_joined_run
from .outcome import exit_status
from .readout import Readings
from .ticks import TickRounds, keep_books
from .windows_api import WindowsAPI

if TYPE_CHECKING:
    from .rundir.runlog import RunLog
    from .sampler import DeviceState, Sampler
    from .summary import Summary

log = logging.getLogger("tracker")


def track(name: str = "run", **options: Any) -> Tracker:
    """Create a Tracker (see `Tracker` for the options). Start it with `with` or `.start()`."""
    return Tracker(name, **options)


class Tracker(WindowsAPI, Readings):
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
        self._setup(TrackerConfig.from_options(name, **options))

    @classmethod
    def from_config(cls, config: TrackerConfig) -> Tracker:
        """A Tracker for an already validated configuration."""
        tracker = cls.__new__(cls)
        tracker._setup(config)
        return tracker

    def _setup(self, config: TrackerConfig) -> None:
        """The parts of a tracker, from a validated configuration (assembly.py)."""
        import uuid

        from .assembly import assemble
        from .manifest import sampling_record
        from .run_view import RunView
        from .windowbook import WindowBook

        parts = assemble(config)
        self.config, self.run_id = config, str(uuid.uuid4())
        # "user": the name was given; "command": `energy-tracker run` took the command's file
        # name, and a tracked script's own name replaces it (follow.joined_options)
        self.name, self.name_source = config.name, "user"
        self.pue, self.pue_source = config.pue_value, config.pue_source
        self.rate_hz, self.counter_interval_s = config.rate_hz, config.counter_interval_s
        self.summary_every_s, self.cpu_tdp_w = config.summary_every_s, config.cpu_tdp_w
        self.gpus = list(config.gpus) if config.gpus is not None else None
        self.cpu, self.ram, self.node = config.cpu, config.ram, config.node
        self.powercap_root, self.hwmon_root = config.powercap_root, config.hwmon_root
        self._given_sensors = list(config.sensors) if config.sensors is not None else None
        self.region, self.region_note, self.factor = parts.region, parts.region_note, parts.factor
        assert config.output_dir is not None   # from_options always sets it
        self.output_root, self._explicit_run_dir = config.output_dir, config.run_dir
        self._live, self._exporters = parts.live, parts.hub
        self.emissions_csv, self.prometheus_port = config.emissions_csv, config.prometheus_port
        self._metrics_server: Any = None
        self.job_option, self.job_timeout_s = config.job, config.job_timeout_s
        self._job: Any = None    # job.member.JobMember when this process is part of a job
        self.price, self.report_html = config.price, config.report_html
        self._sensors, self._discovery_notes = parts.sensors, parts.discovery_notes
        self.run_dir: Optional[Path] = None
        self.devices: list[DeviceState] = []
        self.notes: list[str] = [n for n in (self.region_note, config.options_note()) if n]
        self._ticks: Optional[TickRounds] = None   # sampler thread's bookkeeping, step accounts
        self._lock, self._stop_lock = threading.Lock(), threading.Lock()   # the run's state
        self._stopping_thread: Optional[int] = None
        self._pid: Optional[int] = None        # the process that started the run
        self._state = "new"
        self._final: Optional[Summary] = None      # what stop() returned (a job's: the job)
        self.own_summary: Optional[Summary] = None   # its run directory's (a part of a job's)
        self._log: Optional[RunLog] = None
        self._sampler: Optional[Sampler] = None
        self._manifest_cache: Optional[dict[str, Any]] = None   # run.json as last written
        self._stop_hooks: list[Callable[[float], None]] = []
        self._origin = time.monotonic()
        self.clock: Callable[[], float] = lambda: time.monotonic() - self._origin
        # the clock and its origin are looked up when used: start() and joining reset them;
        # log_to: progress at epoch ends, every log_every_steps steps
        hub = parts.hub
        self._book = WindowBook(lambda: self.clock(), lambda: self._origin,
                                state=lambda: self._state, anchor=self._request_anchor,
                                on_step=hub.step_closed if hub is not None else None,
                                on_window=hub.window_closed if hub is not None else None)
        self.joined, self.start_wall = False, 0.0
        self._config = dict(config.manifest(), region=self.region)   # region: as used
        self._sampling = sampling_record(config)
        self.view = RunView(self, state=lambda: self._state, final=lambda: self._final,
                            job=lambda: self._job)   # what exporters and Prometheus see

    def start(self) -> Tracker:
        with self._lock:
            if self._state != "new":
                raise ConfigError("this tracker was already started; create a new one per run")
            self._state = "running"
        self._pid = os.getpid()
        joined = os.environ.get(ENV_RUN_DIR)
        if joined and self._explicit_run_dir is None and self._given_sensors is None:
            return self._join(Path(joined))
        if self._sensors is None:   # not needed at construction (assembly.assemble)
            self._sensors, self._discovery_notes = discover_sensors(self.config)
        self.notes.extend(self._discovery_notes)
        for n in self._discovery_notes:
            log.info("energy-tracker: %s", n)
        from . import sampler as clock_source  # the system's clock, or a test's by hand
        from .sampler import Sampler, Sampling, monotonic_clock

        self.start_wall = time.time()
        try:
            self._job, sensors, self.run_dir, self._log = open_run_dir(
                self.job_option, self._sensors, output_root=self.output_root, name=self.name,
                run_dir=self._explicit_run_dir, notes=self.notes, start_wall=self.start_wall)
        except ConfigError:
            with self._lock:
                self._state = "new"
            raise
        sampling = Sampling(sensors, interval_s=1.0 / self.rate_hz)
        self.devices = sampling.devices
        for hook in sensor_stop_hooks(self.devices, self.notes):   # e.g. whose CPU time
            self.on_stop(hook)
        ticks = self._keep_books(self.run_dir, sampling)
        if self._live is not None:
            self._live._on_update = ticks.intensity
        self._sampler = Sampler(sampling, clock=lambda: self.clock(), after_tick=ticks.after_tick)
        # t=0 is the first reading: the sampler's first tick runs synchronously in start().
        self._origin = origin = clock_source.monotonic_s()
        self.clock = monotonic_clock(origin)
        self._sampler.start()
        self._write_manifest(origin)
        if self._live is not None:
            self._live.start(start_wall=self.start_wall, run_clock=lambda: self.clock())
        ticks.write_summary(self.clock(), status="running")
        if self.prometheus_port is not None:
            from .prometheus import serve
            try:
                self._metrics_server = serve(self.view, self.prometheus_port)
            except ConfigError as e:  # the run goes on; the endpoint is what failed
                self.notes.append(f"Prometheus endpoint not started: {e}")
                log.warning("energy-tracker: %s", e)
        signals.install(id(self), self._on_sigterm)
        return self._started()

    def _join(self, run_dir: Path) -> Tracker:
        """Follow the run that `energy-tracker run` is tracking instead of sampling again."""
        run = open_joined_run(run_dir, config=self.config, used=self._config, name=self.name)
        if run is None:   # no run.json there: track on our own
            with self._lock:
                self._state = "new"
            return self.start()
        self.joined, self.run_dir, self.run_id = True, run_dir, run.run_id
        self.start_wall, self._origin, self.clock = run.start_wall, run.origin, run.clock
        self.factor, self.pue, self.pue_source = run.factor, run.pue, run.pue_source
        self.name, self._live, self.emissions_csv = run.name, None, False
        self.notes.extend(run.notes)
        self.devices, self._log = run.devices, run.marks   # our windows go to our marks file
        self._book.ids = itertools.count(os.getpid() * 1_000_000)  # unique among joined processes
        ticks = self._keep_books(None)   # a follower of the owner's log, with a Sampler's interface
        self._sampler = follow(run, self._log, job_option=self.job_option,  # type: ignore[assignment]
                               clock=self.clock, after_tick=ticks.after_tick)
        return self._started()

    def _keep_books(self, steps_dir: Optional[Path], sampling: Any = None) -> TickRounds:
        """The step accounts, checkpoints and the sampler thread's rounds (ticks.py)."""
        assert self._log is not None and self.run_dir is not None
        self._ticks = keep_books(
            self._log, self._book, self.devices, run_dir=self.run_dir, steps_dir=steps_dir,
            live=self._live, start_wall=self.start_wall, joined=self.joined, job=self._job,
            sampling=sampling, notes=self.notes, clock=lambda: self.clock(), build=self._build,
            running=lambda: self._state == "running", summary_every_s=self.summary_every_s,
            rewrite_manifest=self._write_manifest,
            step_detail_steps=self.config.step_detail_steps, report_html=self.report_html)
        return self._ticks

    def _started(self) -> Tracker:
        if self._exporters is not None:   # a joined script still logs its own tools
            self._exporters.start(self.view)
        atexit.register(self._stop_at_exit)
        return self

    def _owned(self) -> bool:
        """Is this the process that started the run? A forked child (a DataLoader worker,
        multiprocessing with fork) inherits the tracker but must not end the parent's run."""
        return self._pid is None or self._pid == os.getpid()

    def _stop_at_exit(self) -> None:
        """A tracker started but never stopped still gets its summary when Python exits."""
        if self._state == "running" and self._owned():
            self.notes.append("stopped at interpreter exit: stop() was never called")
            self.stop("interrupted")

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
        assert self._sampler and self._log and self._ticks and self.run_dir   # started
        if not self._sampler.stop():
            self.notes.append("the sampler did not finish its last read within 5 s "
                              "(a hung driver?); the summary uses the data up to then")
        # The run ends at the final reading (not at the last device reading: a lost GPU's
        # curve ends early, and its missing energy is reported, not the run shortened).
        t_end = round(getattr(self._sampler, "last_tick_t", None) or self.clock(), 6)
        self._book.close_all(t_end)
        close_sensors(self.devices)
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
        self._ticks.finish()   # the last marks and steps settled, segments condensed
        if not self.joined:   # windows and options of the processes joined to this run
            job = merge_joined_marks(self.run_dir, self._book, self, used=self._config,
                                     name_given=self.name_source == "user", job=self._job,
                                     output_root=self.output_root, runlog=self._log)
            if job is not self._job:   # ranks of a job joined: this node's part of the job
                self._job, self.run_dir = job, job.run_dir
                self._write_manifest()
        summary = self._build(t_end, status)
        if self.joined:  # the parent writes the run's files; ours are only our marks
            self._log.close()
        else:
            assert self._manifest_cache is not None
            summary = write_final_files(
                summary, runlog=self._log, run_dir=self.run_dir, manifest=self._manifest_cache,
                in_job=self._job is not None, report_html=self.report_html,
                emissions_csv=self.emissions_csv,
                csv_root=self.run_dir.parent if self._explicit_run_dir else self.output_root)
        self._final = self.own_summary = summary
        with self._lock:
            self._state = "stopped"
        atexit.unregister(self._stop_at_exit)
        if self._job is not None:   # every rank tells the job's story (job/view.py)
            self._final = summary = end_job(
                self._job, summary, output_root=self.output_root,
                explicit_run_dir=self._explicit_run_dir, emissions_csv=self.emissions_csv,
                timeout_s=self.job_timeout_s, report_html=self.report_html,
                own_end_wall=self.start_wall + t_end)
        if self._exporters is not None:   # after the files: summary.json is attached
            self._exporters.stop(self.view, summary)
        print_end_block_if_due(summary, quiet=self.config.quiet, joined=self.joined, job=self._job)
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
            status, note = exit_status(exc_type, exc)
            if note:
                self.notes.append(note)
        finally:
            self.stop(status)
        return False

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Use as a decorator: each call of `func` is its own run with this configuration."""
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Tracker.from_config(self.config):
                return func(*args, **kwargs)
        return wrapper

    @property
    def summary(self) -> Summary:
        """The final summary once stopped; a live snapshot while running."""
        if self._final is not None:
            return self._final
        if self._state == "new":
            raise ConfigError("the tracker has not started yet")
        return self._build(self.clock(), "running")

    def on_stop(self, hook: Callable[[float], None]) -> None:
        """Call `hook(t_end)` inside stop(), after the final reading and before the summary is
        built (e.g. to note a projection against the final energy in `notes`)."""
        self._stop_hooks.append(hook)

    def _build(self, t_end: float, status: str) -> Summary:
        from .summary_build import build_summary

        live, sampler = self._live, self._sampler
        ledger = self._ticks.ledger if self._ticks is not None else None
        return build_summary(
            run_id=self.run_id, name=self.name, status=status, start_wall=self.start_wall,
            t_end=t_end, devices=self.devices, windows=self._book.snapshot(), factor=self.factor,
            periods=live.periods() if live is not None else None,
            live_status=live.status() if live is not None else None, pue=self.pue,
            pue_source=self.pue_source, notes=list(self.notes) + (
                [f"sampler: {e}" for e in sampler.callback_errors] if sampler is not None else []),
            run_dir=str(self.run_dir) if self.run_dir else None,
            closed_steps=(ledger.count + ledger.pending if ledger is not None else 0)
            + self._book.steps_in_flight(), sampling=self._sampling,
            elsewhere=self._job.elsewhere() if self._job is not None else (), price=self.price,
            ledger=ledger if status != "running" else None)

    def _write_manifest(self, origin: Optional[float] = None) -> None:
        """run.json as the run stands (manifest.py; kept for the emissions row): at start
        (`origin`: run time 0, monotonic), then again whenever what it says has changed."""
        from .manifest import run_manifest
        if origin is None:
            if self._manifest_cache is None:
                return   # not written yet: start() writes it
            origin = self._manifest_cache["start_monotonic"]
        assert self._log is not None
        self._manifest_cache = run_manifest(
            run_id=self.run_id, name=self.name, name_source=self.name_source, origin=origin,
            start_wall=self.start_wall, devices=self.devices, factor=self.factor, pue=self.pue,
            pue_source=self.pue_source, notes=self.notes, job=self._job,
            config=dict(self._config, sampling=self._sampling))
        self._log.write_manifest(self._manifest_cache)

    def _request_anchor(self) -> None:
        if self._sampler is not None:
            self._sampler.request_anchor()


__all__ = ["ENV_RUN_DIR", "Tracker", "track"]


declare_options(Tracker, track)   # their typed signature, from the declared options
