"""require_service (tests/services.py): a missing service skips with its reason locally, and
fails under CI=true, where scripts/ci_services.sh must have set it up."""

from __future__ import annotations

import pytest
from services import require_service


def test_an_available_service_goes_on(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require_service("Prometheus", True, "not used") is None


def test_a_missing_service_skips_with_its_reason_outside_ci(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="SLURM is not available: no srun"):
        require_service("SLURM", False, "no srun")
    assert "SKIPPED: SLURM is not available: no srun" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_a_missing_service_fails_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true and Chromium is not available"):
        require_service("Chromium", False, "nothing at /usr/bin/chromium")


def test_ci_false_is_not_ci(monkeypatch):
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_service("Open MPI", False, "no mpirun")
