"""`amdsmi` for subprocesses of the tests (`energy-tracker devices`, tracked scripts): put this
folder on PYTHONPATH.

Builds a fake AMD SMI from the environment (see fake_amdsmi.py):
  FAKE_AMDSMI_WATTS  comma-separated constant power of each GPU (W), e.g. "500,450"
  FAKE_AMDSMI_BORN   time.monotonic() at which the GPUs were "created" (shared by all processes
                     of a test, so their accumulators agree)
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fake_amdsmi import FakeAMDSMI, gpus


def _build() -> FakeAMDSMI:
    watts = [float(w) for w in os.environ.get("FAKE_AMDSMI_WATTS", "500").split(",") if w]
    born = float(os.environ.get("FAKE_AMDSMI_BORN", "0"))
    found = gpus(len(watts))
    for g, w in zip(found, watts):
        g.profile = type(g.profile)(w)
        g.born = born
    return FakeAMDSMI(found)


sys.modules[__name__] = _build()
