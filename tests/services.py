"""Tests that need a real service (Chromium, Prometheus, SLURM, Open MPI): skipped with the
reason printed on a developer's machine, but failed under CI=true, where scripts/ci_services.sh
must have set the service up (a silent skip there would hide that it never ran)."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """CI=true (GitHub Actions, GitLab CI and most others set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_service(name: str, available: bool, why: str) -> None:
    """Go on if `available`; else skip saying `why` (printed too, so `pytest -q` shows it),
    or fail under CI=true."""
    if available:
        return
    reason = f"{name} is not available: {why}"
    if in_ci():
        pytest.fail(f"CI=true and {reason} (scripts/ci_services.sh sets it up in CI; see its "
                    "output)", pytrace=False)
    print(f"SKIPPED: {reason}")
    pytest.skip(reason)
