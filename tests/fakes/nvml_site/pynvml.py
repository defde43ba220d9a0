"""`pynvml` for subprocesses of the tests (torchrun workers): put this folder on PYTHONPATH.

Builds a fake NVML from the environment, so each process sees the node's GPUs exactly as the
real driver would show them to every process of a node:
  FAKE_NVML_WATTS  comma-separated constant power of each GPU (W), e.g. "300,200"
  FAKE_NVML_BORN   time.monotonic() at which the GPUs were "created" (shared by all processes
                   of the test, so their counters agree and the test knows the true energy)
  ENERGY_TRACKER_NODE  makes the UUIDs node-specific (two simulated nodes, two sets of GPUs)
"""

from __future__ import annotations

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fake_nvml import Constant, FakeGPU, FakeNVML


def node_uuids(node: str, n: int) -> list[str]:
    h = hashlib.sha1(node.encode()).hexdigest()[:8]
    return [f"GPU-{h}-{i:04d}-4000-8000-00000000000{i}" for i in range(n)]


def _build() -> FakeNVML:
    watts = [float(w) for w in os.environ.get("FAKE_NVML_WATTS", "300").split(",") if w]
    born = float(os.environ.get("FAKE_NVML_BORN", "0"))
    node = os.environ.get("ENERGY_TRACKER_NODE", "") or os.uname().nodename
    gpus = [FakeGPU(name="NVIDIA H100 80GB HBM3", uuid=u, profile=Constant(w), born=born)
            for u, w in zip(node_uuids(node, len(watts)), watts)]
    return FakeNVML(gpus)


sys.modules[__name__] = _build()
