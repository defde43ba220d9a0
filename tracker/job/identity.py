"""Which job this process belongs to, and where in it: read from what the launcher already set.

A job is every process of one launch (`torchrun`, `srun`, `mpirun`, `accelerate launch`,
`deepspeed`, `mp.spawn` with an initialised process group). Sources, first match wins:

  job id      `job=` option > ENERGY_TRACKER_JOB > torchrun's TORCHELASTIC_RUN_ID > SLURM job and
              step ids > MPI (PMIx namespace, OpenMPI job id, Hydra's PMI_PORT) > an id agreed
              through the launcher's or the process group's store > MASTER_ADDR:MASTER_PORT
  rank/world  torchrun RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE/GROUP_RANK/GROUP_WORLD_SIZE,
              SLURM_PROCID/SLURM_STEP_NUM_TASKS/SLURM_LOCALID/SLURM_NODEID, OMPI_COMM_WORLD_*,
              PMI_RANK/PMI_SIZE, or torch.distributed when it is already initialised
  node        ENERGY_TRACKER_NODE, else hostname + boot id (so two machines that share a
              hostname, e.g. containers, are still two nodes)

torchrun's static rendezvous sets TORCHELASTIC_RUN_ID=none for every launch, so then the
processes agree on a fresh id through the agent's TCPStore (MASTER_ADDR:MASTER_PORT, which the
workers already use for init_process_group): the first to ask writes it, everyone reads it, and
it survives elastic restarts because the agent keeps the store. Every store call is bounded.

Nothing here imports torch unless the program already did, or the agreement needs the store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import sys
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

log = logging.getLogger("tracker")

ENV_JOB = "ENERGY_TRACKER_JOB"
ENV_NODE = "ENERGY_TRACKER_NODE"
STORE_KEY = "energy_tracker/launch"   # the agreed launch token in the launcher's store
STORE_TIMEOUT_S = 5.0
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class JobIdentity:
    """This process's place in a distributed job."""

    job_id: str                     # directory-safe id of the job
    source: str                     # where the id came from, said in the report
    id_kind: str                    # explicit | launcher | agreed | derived (see layout.py)
    launch: str                     # token of this launch ("" when the id alone decides)
    rank: int
    world_size: int
    local_rank: Optional[int]
    local_world_size: Optional[int]
    node_rank: Optional[int]
    nnodes: Optional[int]
    node: str                       # node name (hostname or ENERGY_TRACKER_NODE)
    node_key: str                   # hostname + boot id, or the override
    restart: int = 0                # torchrun restart / SLURM requeue count
    max_restarts: Optional[int] = None
    launcher: str = "unknown"       # torchrun | slurm | mpi | torch.distributed | env
    extra: dict[str, Any] = field(default_factory=dict)   # SLURM ids, MASTER_ADDR, ...

    @property
    def more_attempts_possible(self) -> bool:
        """Could the launcher restart this attempt after a failure (torchrun --max-restarts)?"""
        return self.max_restarts is not None and self.restart < self.max_restarts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def safe_name(text: str, default: str = "job") -> str:
    """A file-name-safe version of an id or host name."""
    return _SAFE.sub("-", str(text)).strip("-.")[:120] or default


def node_identity(env: Mapping[str, str]) -> tuple[str, str]:
    """(node name, node key). ENERGY_TRACKER_NODE overrides both (tests simulate nodes)."""
    override = env.get(ENV_NODE, "").strip()
    if override:
        return safe_name(override, "node"), override
    host = socket.gethostname() or "localhost"
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return safe_name(host.split(".")[0], "node"), f"{host}:{boot}" if boot else host


def _int(env: Mapping[str, str], *names: str) -> Optional[int]:
    for name in names:
        value = env.get(name, "").strip()
        if value.lstrip("-").isdigit():
            return int(value)
    return None


@dataclass
class _Place:
    launcher: str
    rank: int
    world_size: int
    local_rank: Optional[int] = None
    local_world_size: Optional[int] = None
    node_rank: Optional[int] = None
    nnodes: Optional[int] = None
    restart: int = 0
    max_restarts: Optional[int] = None


def _slurm_tasks_per_node(spec: str) -> Optional[int]:
    """SLURM_STEP_TASKS_PER_NODE like "8(x2)" or "4,4": the count when it is uniform."""
    counts = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x\d+\))?\s*", part)
        if not m:
            return None
        counts.add(int(m.group(1)))
    return counts.pop() if len(counts) == 1 else None


def _place(env: Mapping[str, str]) -> Optional[_Place]:
    """Rank and world from the launcher's variables (torchrun first: it may run under srun)."""
    if "TORCHELASTIC_RUN_ID" in env or ("RANK" in env and "WORLD_SIZE" in env):
        rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        if rank is not None and world is not None:
            return _Place("torchrun" if "TORCHELASTIC_RUN_ID" in env else "env", rank, world,
                          _int(env, "LOCAL_RANK"), _int(env, "LOCAL_WORLD_SIZE"),
                          _int(env, "GROUP_RANK"), _int(env, "GROUP_WORLD_SIZE"),
                          _int(env, "TORCHELASTIC_RESTART_COUNT") or 0,
                          _int(env, "TORCHELASTIC_MAX_RESTARTS"))
    # srun sets the step variables; a batch script (no srun) has SLURM_PROCID=0 and the job's
    # task count but is one process, so it is not taken for a distributed job.
    if "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        world = _int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS")
        rank = _int(env, "SLURM_PROCID")
        if rank is not None and world is not None:
            per_node = _slurm_tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE", "")) or \
                _int(env, "SLURM_NTASKS_PER_NODE")
            return _Place("slurm", rank, world, _int(env, "SLURM_LOCALID"), per_node,
                          _int(env, "SLURM_NODEID"),
                          _int(env, "SLURM_STEP_NUM_NODES", "SLURM_JOB_NUM_NODES", "SLURM_NNODES"),
                          _int(env, "SLURM_RESTART_COUNT") or 0)
    if "OMPI_COMM_WORLD_RANK" in env:
        rank, world = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
        if rank is not None and world is not None:
            local_size = _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE")
            return _Place("mpi", rank, world, _int(env, "OMPI_COMM_WORLD_LOCAL_RANK"),
                          local_size, None,
                          -(-world // local_size) if local_size else None)
    if "PMI_RANK" in env or "PMIX_RANK" in env:
        rank = _int(env, "PMI_RANK", "PMIX_RANK")
        world = _int(env, "PMI_SIZE", "PMIX_SIZE")
        if rank is not None and world is not None:
            local_size = _int(env, "MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE")
            return _Place("mpi", rank, world, _int(env, "MPI_LOCALRANKID", "PMIX_LOCAL_RANK"),
                          local_size, None,
                          -(-world // local_size) if local_size else None)
    dist = _initialised_dist()
    if dist is not None:
        return _Place("torch.distributed", dist.get_rank(), dist.get_world_size(),
                      _int(env, "LOCAL_RANK"), _int(env, "LOCAL_WORLD_SIZE"))
    return None


def _initialised_dist() -> Any:
    """torch.distributed if the program imported it and initialised a process group."""
    if "torch.distributed" not in sys.modules:
        return None
    dist = sys.modules["torch.distributed"]
    try:
        if dist.is_available() and dist.is_initialized():
            return dist
    except Exception:
        return None
    return None


def _launcher_id(env: Mapping[str, str], place: _Place) -> Optional[tuple[str, str, str]]:
    """(job id, source, launch token) from the launcher's own ids, or None."""
    run_id = env.get("TORCHELASTIC_RUN_ID", "").strip()
    if run_id and run_id.lower() != "none":
        return run_id, "torchrun (TORCHELASTIC_RUN_ID)", ""
    if place.launcher == "slurm" or (run_id == "" and "SLURM_JOB_ID" in env
                                     and "SLURM_STEP_ID" in env and place.launcher != "env"):
        job, step = env.get("SLURM_JOB_ID", ""), env.get("SLURM_STEP_ID", "")
        if job:
            token = f"{job}.{step}"
            return f"slurm-{token}", "SLURM (SLURM_JOB_ID.SLURM_STEP_ID)", token
    for var in ("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "OMPI_MCA_orte_ess_jobid"):
        ns = env.get(var, "").strip()
        if ns and place.launcher == "mpi":
            return f"mpi-{_short_hash(ns)}", f"MPI ({var})", ns
    port = env.get("PMI_PORT", "").strip()
    if port and place.launcher == "mpi":
        return f"mpi-{_short_hash(port)}", "MPI (Hydra PMI_PORT)", port
    return None


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def agree_on_token(env: Mapping[str, str], *, timeout_s: float = STORE_TIMEOUT_S
                   ) -> tuple[Optional[str], str]:
    """A launch token all processes of the job agree on, through a store they share.

    torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE, at MASTER_ADDR:MASTER_PORT) or the
    default store of an initialised process group. Returns (token or None, how).
    """
    mine = uuid.uuid4().hex[:12]
    dist = _initialised_dist()
    try:
        if env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true" and \
                env.get("MASTER_ADDR") and _int(env, "MASTER_PORT") is not None:
            from datetime import timedelta

            # A plain connect first: torch's client retries (and logs C++ stacks) well past
            # its timeout when nothing listens.
            with socket.create_connection((env["MASTER_ADDR"], int(env["MASTER_PORT"])),
                                          timeout=min(timeout_s, 2.0)):
                pass
            import torch.distributed as tdist
            # TCPStore: torch.distributed re-exports it from torch._C without __all__
            store = tdist.TCPStore(  # type: ignore[attr-defined, unused-ignore]
                env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                timeout=timedelta(seconds=timeout_s), wait_for_workers=False)
            how = "torchrun's agent store"
        elif dist is not None:
            from datetime import timedelta
            store = dist.distributed_c10d._get_default_store()
            store.set_timeout(timedelta(seconds=timeout_s))
            how = "the process group's store"
        else:
            return None, "no shared store"
        value = store.compare_set(STORE_KEY, "", mine)
        token = value.decode() if isinstance(value, bytes) else str(value)
        return (token or None), how
    except Exception as e:  # unreachable store, old torch: fall back, never raise
        log.info("energy-tracker: could not agree on a job id through the store: %s", e)
        return None, f"store unreachable ({type(e).__name__})"


def detect(env: Optional[Mapping[str, str]] = None, *, job: Optional[str] = None,
           agree: bool = True) -> Optional[JobIdentity]:
    """This process's job identity, or None for a single-process run (nothing changes then).

    `job`: an explicit job id (wins over everything; also makes a one-process run a job).
    `agree`: allow the store agreement (tests of pure detection turn it off).
    """
    env = os.environ if env is None else env
    explicit = job if job is not None else (env.get(ENV_JOB, "").strip() or None)
    place = _place(env)
    if place is None or place.world_size <= 1:
        if explicit is None:
            return None
        place = place if place is not None else _Place("explicit", 0, 1)
    if (place.nnodes or 1) == 1:
        # One node (or unknown): local = global. Lightning's main process, say, sets no
        # LOCAL_RANK; the local rank only decides which GPU a process claims first.
        if place.local_rank is None:
            place.local_rank = place.rank
        if place.local_world_size is None:
            place.local_world_size = place.world_size
    node, node_key = node_identity(env)
    extra = {k: env[k] for k in ("SLURM_JOB_ID", "SLURM_STEP_ID", "MASTER_ADDR", "MASTER_PORT",
                                 "TORCHELASTIC_RUN_ID") if k in env}
    found = _launcher_id(env, place)
    token, how = None, "agreement off"
    if agree and (found is None or place.launcher == "torchrun"):
        # One token per launch, read by every process: it tells two launches apart when they
        # reuse one id (a fixed --rdzv_id, a job= name given to every relaunch).
        token, how = agree_on_token(env)
    if token is None and found is not None and found[2]:
        token = found[2]                    # SLURM job.step, MPI namespace
    if token is None and place.world_size <= 1:
        token = uuid.uuid4().hex[:12]       # one process: each launch is its own
    if explicit is not None:
        job_id, source = explicit, ("job= option" if job is not None else ENV_JOB)
        id_kind = "explicit"
    elif found is not None:
        job_id, source, _ = found
        id_kind = "launcher"
    elif token:
        job_id, source, id_kind = f"{place.launcher}-{token}", \
            f"{how} (agreed by the processes)", "agreed"
    else:
        seed = f"{env.get('MASTER_ADDR', '')}:{env.get('MASTER_PORT', '')}:{place.world_size}"
        job_id = f"{place.launcher}-{_short_hash(seed)}"
        source = (f"derived from MASTER_ADDR:MASTER_PORT and WORLD_SIZE ({how}); pass "
                  f"job= or {ENV_JOB} to be sure two launches are not merged")
        id_kind = "derived"
    launch = token or ""
    return JobIdentity(
        job_id=safe_name(job_id), source=source, id_kind=id_kind, launch=launch, rank=place.rank,
        world_size=max(place.world_size, 1), local_rank=place.local_rank,
        local_world_size=place.local_world_size, node_rank=place.node_rank,
        nnodes=place.nnodes, node=node, node_key=node_key, restart=place.restart,
        max_restarts=place.max_restarts, launcher=place.launcher, extra=extra)


__all__ = ["ENV_JOB", "ENV_NODE", "JobIdentity", "agree_on_token", "detect", "node_identity",
           "safe_name"]
