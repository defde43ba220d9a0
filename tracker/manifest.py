"""run.json: what a run is (its host, devices, grid factor, options and versions).

Written when the run starts, and again whenever what it says changes (devices claimed late in
a job, the run adopted into a job directory, the run directory recreated). Readers (rebuild,
report, liveness, the emissions row) take the run's identity and clock origin from it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, Optional

from . import __version__
from .config import DEFAULT_RATE_HZ, TrackerConfig


def sampling_record(config: TrackerConfig) -> dict[str, Any]:
    """How the run samples, as its summary and run.json say."""
    return {"rate_hz": config.rate_hz,
            "rate_source": "default" if config.rate_hz == DEFAULT_RATE_HZ else "user",
            "counter_interval_s": config.counter_interval_s,
            "counter_reads": "on schedule, at every window edge but steps, and at stop",
            "model_interval_s": 1.0}


def run_manifest(*, run_id: str, name: str, name_source: str, start_wall: float,
                 origin: float, devices: Sequence[Any], factor: Any, pue: float,
                 pue_source: str, config: dict[str, Any], notes: Sequence[str],
                 job: Any = None) -> dict[str, Any]:
    """run.json's content. `origin`: the monotonic time of run time 0; `config`: the options
    as used (TrackerConfig.manifest() with the region used and the sampling); `job`: the
    job.member.JobMember when the run is a part of a job."""
    import platform
    import socket

    import psutil

    from .redact import redact_argv
    from .rundir.liveness import owner_identity
    from .summary import utc_iso
    argv, redacted = redact_argv(sys.argv)
    return {
        "schema": 1,
        "run_id": run_id, "name": name, "name_source": name_source,
        "started_utc": utc_iso(start_wall), "start_wall": start_wall,
        "start_monotonic": origin,
        "host": {"hostname": socket.gethostname(), "os": platform.platform(),
                 "python": platform.python_version(), "cpu_model": cpu_model(),
                 "cpu_count": os.cpu_count(),
                 "ram_total_gb": round(psutil.virtual_memory().total / 1e9, 3),
                 "pid": os.getpid(), "argv": argv,
                 # values after secret-looking flags and token-shaped values are removed
                 # (run.json is shared): how many
                 "argv_redacted": redacted,
                 # so that a reader can prove this process gone (liveness.py)
                 **owner_identity()},
        "devices": [d.sensor.info.to_dict() for d in devices],
        "grid": factor.to_dict(),
        "pue": pue, "pue_source": pue_source,
        "config": dict(config),
        "notes": list(notes),
        **({"job": job.manifest()} if job is not None else {}),
        "versions": {"trainjoule": __version__,   # the distribution (was energy_tracker)
                     "nvidia_ml_py": package_version("nvidia-ml-py"),
                     "psutil": package_version("psutil")},
    }


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else what platform knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def package_version(dist: str) -> Optional[str]:
    """An installed distribution's version, None when it is not installed: from the name of
    its NAME-VERSION.dist-info directory on sys.path (the first, as importlib.metadata finds
    it; importing importlib.metadata costs start() 25-50 ms), else importlib.metadata."""
    want = _dist_key(dist)
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info"):
                name, _, version = n[:-len(".dist-info")].partition("-")
                if version and _dist_key(name) == want:
                    return version
    try:
        from importlib.metadata import version as metadata_version
        return metadata_version(dist)
    except Exception:
        return None


def _dist_key(name: str) -> str:
    """A distribution name normalised as in dist-info directory names (PEP 503/427)."""
    import re
    return re.sub(r"[-_.]+", "_", name).lower()


__all__ = ["cpu_model", "package_version", "run_manifest", "sampling_record"]
