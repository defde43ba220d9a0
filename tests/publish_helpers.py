"""Shared by the tests/test_publish_*.py files: one short real run against a fake H100."""

from __future__ import annotations

import json
import time
from pathlib import Path


def h100_run(tmp_path: Path, **options) -> Path:
    """A finished run directory: the fake H100 (300 W, energy counter) for ~0.3 s, in DE."""
    import tracker

    opts = dict(region="DE", output_dir=tmp_path / "runs", cpu=False, ram=False, pue=1.2,
                report_html=False, rate_hz=50)
    opts.update(options)
    with tracker.track("publish-test", **opts) as run:
        time.sleep(0.3)
    return Path(run.run_dir)


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def tree_state(path: Path) -> dict:
    """Every file under path with its size and mtime: a reader must change none."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}
