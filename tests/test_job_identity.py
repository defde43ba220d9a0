"""Which job, rank and node a process is, from what the launcher set. The environments below
are the variables real launchers set (read on this project's machine from `torchrun`, `srun`
of SLURM 22.05 and `mpirun` of Open MPI 4.1); tests/test_job_launchers.py runs the real ones."""

from __future__ import annotations

import pytest

from tracker.job.identity import ENV_JOB, ENV_NODE, detect, node_identity, safe_name

TORCHRUN = {"GROUP_RANK": "0", "GROUP_WORLD_SIZE": "1", "LOCAL_RANK": "1",
            "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "localhost", "MASTER_PORT": "43459",
            "RANK": "1", "ROLE_RANK": "1", "ROLE_WORLD_SIZE": "2",
            "TORCHELASTIC_MAX_RESTARTS": "3", "TORCHELASTIC_RESTART_COUNT": "1",
            "TORCHELASTIC_RUN_ID": "afb6c333-c105-47f0-8834-c09b391db914",
            "TORCHELASTIC_USE_AGENT_STORE": "True", "WORLD_SIZE": "2"}
SRUN = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
        "SLURM_JOB_NUM_NODES": "2"}
SBATCH_SCRIPT = {"SLURM_JOB_ID": "2", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
                 "SLURM_NTASKS": "2", "SLURM_PROCID": "0"}
MPIRUN = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
          "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
          "OMPI_COMM_WORLD_NODE_RANK": "1", "OMPI_MCA_ess_base_jobid": "1300561921",
          "PMIX_NAMESPACE": "1300561921", "PMIX_RANK": "3"}
HYDRA = {"PMI_RANK": "1", "PMI_SIZE": "2", "PMI_PORT": "node7:41234", "MPI_LOCALRANKID": "1",
         "MPI_LOCALNRANKS": "2"}


def test_a_single_process_is_not_a_job():
    assert detect({}, agree=False) is None
    assert detect({"RANK": "0", "WORLD_SIZE": "1"}, agree=False) is None
    assert detect(SBATCH_SCRIPT, agree=False) is None   # a batch script is one process


def test_torchrun():
    j = detect(dict(TORCHRUN), agree=False)
    assert j is not None
    assert (j.job_id, j.launcher, j.id_kind) == (TORCHRUN["TORCHELASTIC_RUN_ID"], "torchrun",
                                                 "launcher")
    assert (j.rank, j.world_size, j.local_rank, j.local_world_size) == (1, 2, 1, 2)
    assert (j.node_rank, j.nnodes, j.restart, j.max_restarts) == (0, 1, 1, 3)
    assert j.more_attempts_possible


def test_srun():
    j = detect(dict(SRUN), agree=False)
    assert j is not None
    assert (j.job_id, j.launcher, j.launch) == ("slurm-4242.0", "slurm", "4242.0")
    assert (j.rank, j.world_size, j.local_rank, j.local_world_size) == (5, 8, 1, 4)
    assert (j.node_rank, j.nnodes) == (1, 2)


def test_torchrun_under_srun_is_the_torchrun_job():
    j = detect({**SRUN, **TORCHRUN}, agree=False)
    assert j is not None and j.launcher == "torchrun" and j.rank == 1
    assert j.extra["SLURM_JOB_ID"] == "4242"


def test_mpirun():
    j = detect(dict(MPIRUN), agree=False)
    assert j is not None and j.launcher == "mpi" and j.job_id.startswith("mpi-")
    assert (j.rank, j.world_size, j.local_rank, j.local_world_size, j.nnodes) == (3, 4, 1, 2, 2)
    other = detect({**MPIRUN, "PMIX_NAMESPACE": "99", "OMPI_MCA_ess_base_jobid": "99"},
                   agree=False)
    assert other is not None and other.job_id != j.job_id     # two launches, two jobs


def test_hydra_mpi():
    j = detect(dict(HYDRA), agree=False)
    assert j is not None and j.launcher == "mpi" and (j.rank, j.world_size) == (1, 2)
    assert j.job_id.startswith("mpi-")


def test_plain_rank_variables_get_a_derived_id_that_says_so():
    env = {"RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    j = detect(env, agree=False)
    assert j is not None and j.id_kind == "derived" and j.launcher == "env"
    assert "job=" in j.source and ENV_JOB in j.source
    assert detect(dict(env, RANK="0"), agree=False).job_id == j.job_id


def test_explicit_job_wins_and_makes_one_process_a_job():
    j = detect({}, job="llama ft/7", agree=False)
    assert j is not None and j.job_id == "llama-ft-7" and j.world_size == 1
    assert j.id_kind == "explicit"
    j = detect({**TORCHRUN, ENV_JOB: "from-env"}, agree=False)
    assert j is not None and j.job_id == "from-env" and j.rank == 1 and j.source == ENV_JOB


def test_node_override_and_names():
    assert node_identity({ENV_NODE: "node-b"}) == ("node-b", "node-b")
    name, key = node_identity({})
    assert name and key.startswith(__import__("socket").gethostname())
    assert safe_name("../a b/c") == "a-b-c" and safe_name("///") == "job"


def test_static_rendezvous_agrees_through_the_store():
    """TORCHELASTIC_RUN_ID=none: every process reads the id the first one wrote to the agent's
    store, and an unreachable store falls back to a derived id, bounded in time."""
    dist = pytest.importorskip("torch.distributed")
    from datetime import timedelta
    server = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=5),
                           wait_for_workers=False)
    env = {**TORCHRUN, "TORCHELASTIC_RUN_ID": "none", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(server.port)}
    a, b = detect(env), detect(dict(env, RANK="0", LOCAL_RANK="0"))
    assert a is not None and b is not None
    assert a.job_id == b.job_id and a.job_id.startswith("torchrun-") and a.id_kind == "agreed"
    # a second launch (another store) is another job
    server2 = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=5),
                            wait_for_workers=False)
    c = detect(dict(env, MASTER_PORT=str(server2.port)))
    assert c is not None and c.job_id != a.job_id
    import time
    t0 = time.monotonic()
    closed = detect(dict(env, MASTER_PORT="1"))
    assert closed is not None and closed.id_kind == "derived"
    assert time.monotonic() - t0 < 10
