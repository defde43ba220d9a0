"""A job summary's `job` part, typed: which job, its attempts, its nodes with their devices
and members, the GPU energy spread per node, what is missing, and (from a rank's stop while
others still run) whether it is partial.

Written by job/merge.py from the members it gathers, read by the summary's text, the end
block, the exporters, the advice (stragglers) and a rank's view. Like every summary part it is
written as, and reads as, the JSON object summary.json holds (accounting/parts.py), so a job
summary read and written again is the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from ..accounting.parts import DictPart

__all__ = ["Attempt", "GpuSpread", "JobNode", "JobPart", "Missing", "NodeMember"]


@dataclass(frozen=True, eq=False)
class Attempt(DictPart):
    """One attempt of the job (a launch, or a restart of one): its ranks, times and energy."""

    attempt: Optional[int] = None
    launch: Optional[str] = None
    restart: Optional[int] = None
    ranks: Optional[list[int]] = None
    started_utc: Optional[str] = None
    ended_utc: Optional[str] = None
    status: Optional[str] = None
    energy_j: Optional[float] = None


@dataclass(frozen=True, eq=False)
class NodeMember(DictPart):
    """One member run directory of a node: the ranks it stands for, its status, and whether
    its summary was rebuilt from its logs (a killed or running member)."""

    run: Optional[str] = None
    ranks: Optional[list[int]] = None
    status: Optional[str] = None
    rebuilt: Optional[bool] = None


@dataclass(frozen=True, eq=False)
class JobNode(DictPart):
    """One node (machine) of the job: its ranks, its devices (each counted once), its energy,
    emissions and grid factor, and its members."""

    NESTED: ClassVar[dict[str, tuple[str, type[DictPart]]]] = {"members": ("list", NodeMember)}

    node: str = ""
    ranks: Optional[list[int]] = None
    devices: Optional[list[dict[str, Any]]] = None   # name, component, method, energy_j, ...
    energy_j: Optional[float] = None
    emissions_kg: Optional[float] = None
    grid_region: Optional[str] = None
    gco2_per_kwh: Optional[float] = None
    members: Optional[list[NodeMember]] = None


@dataclass(frozen=True, eq=False)
class GpuSpread(DictPart):
    """One node's GPU energies: how many, the lowest, the median and the highest (J)."""

    gpus: Optional[int] = None
    min_j: Optional[float] = None
    median_j: Optional[float] = None
    max_j: Optional[float] = None


@dataclass(frozen=True, eq=False)
class Missing(DictPart):
    """Something the job's numbers lack: ranks that left no files, a member killed without a
    final reading (from when), nodes with no folder. `what` and `reason` are always there."""

    what: Optional[str] = None
    ranks: Optional[list[int]] = None
    node: Optional[str] = None
    attempt_restart: Optional[int] = None
    reason: Optional[str] = None
    missing_from_s: Optional[float] = None
    missing_from_utc: Optional[str] = None
    devices: Optional[list[Any]] = None


@dataclass(frozen=True, eq=False)
class JobPart(DictPart):
    """The `job` part of a job's summary (module docstring)."""

    NESTED: ClassVar[dict[str, tuple[str, type[DictPart]]]] = {
        "attempts": ("list", Attempt), "nodes": ("list", JobNode),
        "gpu_energy_spread": ("map", GpuSpread), "missing": ("list", Missing)}

    job_id: Optional[str] = None
    job_uid: Optional[str] = None
    source: Optional[str] = None
    launcher: Optional[str] = None
    world_size: Optional[int] = None
    nnodes: Optional[int] = None
    attempts: Optional[list[Attempt]] = None
    nodes: Optional[list[JobNode]] = None
    gpu_energy_spread: Optional[dict[str, GpuSpread]] = None
    missing: Optional[list[Missing]] = None
    started_wall: Optional[float] = None
    ended_wall: Optional[float] = None
    partial: Optional[bool] = None          # a rank's view while others still run (view.py)
    still_running: Optional[list[int]] = None
