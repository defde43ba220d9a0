"""psutil-based power models for machines without readable RAPL counters (method "modeled").

CPU: idle floor + utilisation x (TDP - idle floor). RAM: installed GiB x a DDR4 W/GiB figure.
With cpu_scope="machine" (the default) both describe the whole machine, as RAPL does; with
cpu_scope="process" they bill the run's share (cpu_scope.py): the CPU power x the run's share
of the machine's busy CPU time, and the run's resident memory x W/GiB.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

import psutil

from ..errors import ConfigError, SensorFailed, SensorUnavailable
from .base import MODELED, Sensor, SensorInfo
from .cpu_scope import MACHINE, PROCESS, check_cpu_scope, machine_cpu_s, run_usage

# Default CPU TDP when the user gives none. Server parts run ~2-4 W per hardware thread at TDP
# (Xeon Platinum 8380: 270 W / 80 threads = 3.4; Xeon 8480+: 350 W / 112 = 3.1; EPYC 7763:
# 280 W / 128 = 2.2); cloud vCPUs are such threads. 3 W sits mid-range, nearer Intel, which most
# cloud instances still run on.
CPU_W_PER_LOGICAL_CPU = 3.0
# Small machines still power a whole package's uncore, memory controller and I/O; the smallest
# mainstream CPU packages (laptop U-series) are specified at 15 W.
CPU_MIN_DEFAULT_TDP_W = 15.0
# Package power at 0 % utilisation as a fraction of TDP. Uncore, memory controller and I/O stay
# powered at idle; server packages idle at roughly a quarter to a third of TDP (and SPECpower
# results put whole-server idle at ~20-35 % of full load). 0.3 errs towards not undercounting.
CPU_IDLE_FRACTION = 0.3
# Upper bound on a user-given TDP: an 8-socket server is ~3 kW of CPU; above this is a typo
# (mW, or a whole rack).
CPU_MAX_TDP_W = 5000.0

# DRAM power per installed GiB: ~3 W per 8 GiB DDR4 module under load (vendor power guides,
# e.g. Crucial/Micron), i.e. 0.375 W/GiB, the figure other energy trackers also use. Treated as
# constant: DRAM refresh and background power dominate and do not follow utilisation.
RAM_W_PER_GIB = 0.375
_BYTES_PER_GIB = 1024**3
# On cpu_scope="machine", the summary notes other processes' CPU time when it is at least this
# share of the machine's busy time: below it, the operating system's own background work.
OTHER_CPU_NOTE_SHARE = 0.1


def validate_tdp_w(tdp_w: object) -> float:
    """`tdp_w` as a float, or `ConfigError` when it is not a finite number in (0, 5000) W."""
    if isinstance(tdp_w, bool) or not isinstance(tdp_w, (int, float)):
        raise ConfigError(
            f"cpu_tdp_w must be a number of watts, got {tdp_w!r}. "
            "Give the total TDP of all CPU packages, e.g. cpu_tdp_w=205."
        )
    if not (math.isfinite(tdp_w) and 0 < tdp_w < CPU_MAX_TDP_W):
        raise ConfigError(
            f"cpu_tdp_w={tdp_w!r} W is not a plausible CPU TDP: give a finite value above 0 and "
            f"below {CPU_MAX_TDP_W:g} W (the total of all CPU packages, e.g. 2 x 205 = 410), "
            "or leave it out to use the default from the logical CPU count."
        )
    return float(tdp_w)


def default_tdp_w(logical_cpus: int) -> tuple[float, str]:
    """The default TDP for `logical_cpus` logical CPUs, and a sentence saying how it was chosen."""
    per_cpu_w = CPU_W_PER_LOGICAL_CPU * logical_cpus
    rule = f"{CPU_W_PER_LOGICAL_CPU:g} W per logical CPU x {logical_cpus} CPUs"
    if per_cpu_w < CPU_MIN_DEFAULT_TDP_W:
        return CPU_MIN_DEFAULT_TDP_W, f"default: {CPU_MIN_DEFAULT_TDP_W:g} W floor ({rule})"
    return per_cpu_w, f"default: {rule}"


class CpuModelSensor(Sensor):
    """CPU power = idle + (TDP - idle) x whole-machine utilisation, read at most once a second;
    with scope "process", times the run's share of the machine's busy CPU time.

    Utilisation is `psutil.cpu_percent(interval=None)` over all CPUs (not this process), to
    match what RAPL would measure: whole packages. Each read averages utilisation since the
    previous call in this process, so at 1 Hz it covers the sampling interval. The run's mean
    utilisation and CPU seconds are kept in `info.details` (the summary and the CSV row show
    them); `scope_note()` says at stop how much of the machine's CPU time was the run's.
    """

    has_power = True
    power_interval_s = 1.0  # 10 Hz psutil polling slows a 1 ms-step training loop by 3-4 %

    def __init__(self, tdp_w: Optional[float] = None, *, scope: str = MACHINE,
                 usage: Any = None, clock: Callable[[], float] = time.monotonic):
        """`tdp_w`: total TDP of all CPU packages in W; None derives it from the CPU count.
        `scope`: "machine" or "process" (cpu_scope.py); `usage`: what measures the run's CPU
        seconds (default: the SLURM job's cgroup, else this process tree)."""
        logical_cpus = psutil.cpu_count(logical=True) or 1
        if tdp_w is None:
            self.tdp_w, tdp_source = default_tdp_w(logical_cpus)
        else:
            self.tdp_w, tdp_source = validate_tdp_w(tdp_w), "user"
        self.scope = check_cpu_scope(scope)
        self.idle_w = CPU_IDLE_FRACTION * self.tdp_w
        self._clock = clock
        model = (f"{CPU_IDLE_FRACTION:.0%} idle + utilisation x TDP {self.tdp_w:g} W "
                 f"({'user-given' if tdp_w is not None else 'default'})")
        try:
            # the run's CPU seconds: what process scope bills, and at stop the share of the
            # machine's time that was the run's (the machine-scope note)
            self._usage = usage if usage is not None else run_usage()
        except (OSError, psutil.Error) as exc:
            if self.scope == PROCESS:
                raise SensorUnavailable(f"the run's CPU time is unreadable: {exc}") from exc
            self._usage = None
        if self.scope == PROCESS:
            description = (f"CPU power model, process scope: ({model}) x the run's share of the "
                           f"machine's busy CPU time ({self._usage.source})")
        else:
            description = f"CPU power model: {model}; scope: whole machine"
        self.info = SensorInfo(
            name="cpu",
            component="cpu",
            method=MODELED,
            description=description,
            details={
                "tdp_w": self.tdp_w,
                "tdp_source": tdp_source,
                "idle_fraction": CPU_IDLE_FRACTION,
                "logical_cpus": logical_cpus,
                "cpu_scope": self.scope,
            },
        )
        self._util_s = 0.0      # utilisation x seconds, summed over the reads
        self._seconds = 0.0
        self.run_cpu_s = 0.0    # process scope: summed per read; machine scope: at stop
        self.machine_busy_cpu_s = 0.0
        try:
            self._last_t = clock()
            self._start = self._last = machine_cpu_s()
            # both measures of the run count from their creation (just now): no read needed
            self._run_start = self._run_last = 0.0
            self._utilisation_percent()  # the first call only sets psutil's baseline
        except (SensorFailed, OSError, ValueError, psutil.Error) as exc:
            raise SensorUnavailable(str(exc)) from exc

    def read_power_w(self) -> float:
        t = self._clock()
        if self.scope == PROCESS:
            utilisation, share = self._process_share()
        else:
            utilisation, share = min(max(self._utilisation_percent(), 0.0), 100.0) / 100.0, 1.0
        dt = max(t - self._last_t, 0.0)
        self._last_t = t
        self._util_s += utilisation * dt
        self._seconds += dt
        if self._seconds > 0:
            self.info.details["utilization_pct_mean"] = 100.0 * self._util_s / self._seconds
        return (self.idle_w + (self.tdp_w - self.idle_w) * utilisation) * share

    def _process_share(self) -> tuple[float, float]:
        """(machine utilisation, the run's share of the busy CPU time) since the last read."""
        try:
            busy, total = machine_cpu_s()
            run_s = self._usage.cpu_s()
        except (OSError, ValueError, psutil.Error) as exc:
            raise SensorFailed(f"reading CPU times failed: {exc}") from exc
        d_busy, d_total = busy - self._last[0], total - self._last[1]
        d_run = max(run_s - self._run_last, 0.0)
        self._last, self._run_last = (busy, total), run_s
        self.run_cpu_s += d_run
        self.machine_busy_cpu_s += max(d_busy, 0.0)
        d = self.info.details
        d["run_cpu_s"], d["machine_busy_cpu_s"] = self.run_cpu_s, self.machine_busy_cpu_s
        if self.machine_busy_cpu_s > 0:
            d["run_share_pct"] = 100.0 * min(self.run_cpu_s / self.machine_busy_cpu_s, 1.0)
        utilisation = min(max(d_busy / d_total, 0.0), 1.0) if d_total > 0 else 0.0
        # nobody busy at all: the run is the machine's only user, so its idle floor is the run's
        share = 1.0 if d_busy <= 0 else min(d_run / d_busy, 1.0)
        return utilisation, share

    def count_job_ranks(self, peers: Any) -> bool:
        """With scope "process": also count the process trees of the job's other ranks on
        this node (`peers()`: their (pid, start ticks); cpu_scope.ProcessTree.count_peers).
        False where it does not apply (machine scope, a SLURM cgroup already has them)."""
        return _count_peers(self.scope, self._usage, peers)

    def scope_note(self) -> Optional[str]:
        """One line for the summary at stop: the scope used and, on "machine", how much of
        the CPU time billed was other processes'; None when there is nothing to say."""
        if self.scope == PROCESS:
            if self.machine_busy_cpu_s <= 0:
                return None
            dropped = getattr(self._usage, "peer_note", None)
            return (f"cpu_scope=\"process\": the CPU line bills the run's share of the "
                    f"machine's busy CPU time: {self.run_cpu_s:.1f} of "
                    f"{self.machine_busy_cpu_s:.1f} CPU-s "
                    f"({self.info.details.get('run_share_pct', 0.0):.0f}%; "
                    f"{self._usage.source})" + (f"; {dropped}" if dropped else ""))
        if self._usage is None:
            return None
        try:
            busy = machine_cpu_s()[0] - self._start[0]
            run = max(self._usage.cpu_s() - self._run_start, 0.0)
        except (OSError, ValueError, psutil.Error):
            return None
        self.run_cpu_s, self.machine_busy_cpu_s = run, max(busy, 0.0)
        d = self.info.details
        d["run_cpu_s"], d["machine_busy_cpu_s"] = self.run_cpu_s, self.machine_busy_cpu_s
        other = max(busy - run, 0.0)
        if busy <= 0 or other / busy < OTHER_CPU_NOTE_SHARE:
            return None
        return (f"cpu_scope=\"machine\": {other / busy:.0%} of the machine's busy CPU time "
                f"during the run ({other:.1f} of {busy:.1f} CPU-s) was other processes', not "
                f"the run's, and the CPU line includes it; cpu_scope=\"process\" "
                f"(ENERGY_TRACKER_CPU_SCOPE=process) bills only the run's share")

    def _utilisation_percent(self) -> float:
        try:
            return float(psutil.cpu_percent(interval=None))
        except (OSError, psutil.Error) as exc:
            raise SensorFailed(f"psutil.cpu_percent failed: {exc}") from exc


class RamModelSensor(Sensor):
    """RAM power = installed GiB x `RAM_W_PER_GIB`, constant for the run; with scope "process",
    the run's memory x `RAM_W_PER_GIB` instead, read at 1 Hz.

    Installed memory is `psutil.virtual_memory().total`, read once here; inside a container it
    is the host's (or VM's) memory, matching the whole-machine CPU figures. The run's memory is
    its process tree's resident set (RSS; pages shared between a process and its forked
    dataloader workers count once per process, so it errs high, capped at the installed
    memory), or a SLURM job cgroup's memory in use.
    """

    has_power = True
    power_interval_s = 1.0

    def __init__(self, *, scope: str = MACHINE, usage: Any = None) -> None:
        """`scope`: "machine" or "process"; `usage`: what measures the run's memory (default:
        the SLURM job's cgroup, else this process tree; shared with the CPU model)."""
        self.scope = check_cpu_scope(scope)
        try:
            total_bytes: int = psutil.virtual_memory().total
            self._usage = (usage if usage is not None else run_usage()) \
                if self.scope == PROCESS else None
        except (OSError, psutil.Error) as exc:
            raise SensorUnavailable(f"psutil failed: {exc}") from exc
        self.total_bytes = total_bytes
        self.installed_gib = total_bytes / _BYTES_PER_GIB
        self.power_w = RAM_W_PER_GIB * self.installed_gib
        details: dict[str, Any] = {"w_per_gib": RAM_W_PER_GIB, "installed_gib": self.installed_gib,
                                   "cpu_scope": self.scope}
        if self._usage is None:
            description = (f"RAM power model: {RAM_W_PER_GIB:g} W/GiB x "
                           f"{self.installed_gib:.1f} GiB = {self.power_w:.1f} W")
        else:
            what = ("memory in use" if hasattr(self._usage, "job_id") else "resident memory")
            description = (f"RAM power model, process scope: {RAM_W_PER_GIB:g} W/GiB x the "
                           f"run's {what} ({self._usage.source}; of {self.installed_gib:.1f} "
                           "GiB installed)")
        self.info = SensorInfo(name="ram", component="ram", method=MODELED,
                               description=description, details=details)
        self._gib_s = 0.0
        self._reads = 0

    def count_job_ranks(self, peers: Any) -> bool:
        """As CpuModelSensor.count_job_ranks (the two models share one measure of the run)."""
        return _count_peers(self.scope, self._usage, peers)

    def read_power_w(self) -> float:
        if self._usage is None:
            return self.power_w
        try:
            used = self._usage.memory_bytes()
        except (OSError, ValueError, psutil.Error) as exc:
            raise SensorFailed(f"reading the run's memory failed: {exc}") from exc
        if used is None:
            raise SensorFailed(f"the run's memory is unreadable ({self._usage.source})")
        gib = min(max(used, 0), self.total_bytes) / _BYTES_PER_GIB
        self._gib_s += gib
        self._reads += 1
        self.info.details["run_gib_mean"] = self._gib_s / self._reads
        return float(RAM_W_PER_GIB * gib)


def _count_peers(scope: str, usage: Any, peers: Any) -> bool:
    count = getattr(usage, "count_peers", None)
    if scope != PROCESS or not callable(count):
        return False
    count(peers)
    return True
