"""The job directory: `<output_dir>/<name>-<launcher>-<short id>/job.json`, one folder per node,
one run directory per process inside it (each crash-safe exactly like a single run's directory).

    energy-runs/train-torchrun-3f9a1c2b/
        job.json                 who the job is (written once, atomically, by the first process)
        summary.json             the job's summary (written by the process that ends the job)
        node-a/node.json         which machine this folder is
        node-a/rank0/            run.json, samples.jsonl, summary.json, windows.json
        node-a/rank1/
        node-b/rank2/ ...

Everything is created with operations that are atomic on local and network filesystems
(mkdir, rename of a fresh directory, O_EXCL create), so processes starting together agree on
one directory without talking to each other. On a node-local `output_dir` each node writes
its own part; `energy-tracker merge` joins the parts once they are copied together.

The directory's name is for people (`job_dir_name`); who the job is stays in job.json (its
`job_id`, e.g. torchrun's run id, a UUID). A process finds its job's directory by that id: it
looks at every directory whose name ends in this job's `<launcher>-<short id>` (whatever run
name made it) and at the directory named by the bare job id, the layout before names were
readable, so a job begun by an older version is still joined and read.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..rundir.names import JOB_MANIFEST, JOB_SCHEMA, MANIFEST, NODE_MANIFEST, SUMMARY
from ..rundir.runlog import read_json, write_json_atomic
from .identity import JobIdentity, safe_name

# A job directory without any member for this long is not "being created" any more.
_FRESH_S = 60.0
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")
SHORT_ID_CHARS = 24    # a longer id (a job= name) is cut; job.json keeps it whole
NAME_CHARS = 40


def short_id(identity: JobIdentity) -> str:
    """The job id as a directory name shows it: a UUID's first 8 hex digits, an id without its
    launcher prefix ("slurm-4242.0" -> "4242.0"), at most SHORT_ID_CHARS characters. Two jobs
    with one short id still get two directories (open_job_dir compares job.json's id)."""
    job_id, prefix = identity.job_id, f"{identity.launcher}-"
    rest = job_id[len(prefix):] if job_id.startswith(prefix) and len(job_id) > len(prefix) \
        else job_id
    if _UUID.match(rest):
        rest = rest.replace("-", "")[:8]
    return safe_name(rest[:SHORT_ID_CHARS].strip("-."), "job")


def job_dir_name(identity: JobIdentity, name: str) -> str:
    """`<name>-<launcher>-<short id>`, e.g. "train-torchrun-3f9a1c2b" (safe characters only)."""
    readable = re.sub(r"\.{2,}", ".", safe_name(name, "job"))[:NAME_CHARS].strip("-.")
    return f"{readable or 'job'}-{_job_tail(identity)}"


# Launcher names as a directory shows them (a job= id outside any launcher: "job").
_LAUNCHER_LABEL = {"explicit": "job", "torch.distributed": "dist"}


def _job_tail(identity: JobIdentity) -> str:
    launcher = _LAUNCHER_LABEL.get(identity.launcher, identity.launcher)
    return f"{safe_name(launcher, 'job')}-{short_id(identity)}"


def job_uid(identity: JobIdentity) -> str:
    """A stable UUID for the job, the same on every node (emissions.csv's run_id)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL,
                          f"energy-tracker:{identity.job_id}:{identity.launch}"))


def job_manifest(identity: JobIdentity, name: str) -> dict[str, Any]:
    return {"schema": JOB_SCHEMA, "kind": "job", "job_id": identity.job_id,
            "job_uid": job_uid(identity), "name": name, "source": identity.source,
            "id_kind": identity.id_kind, "launch": identity.launch,
            "launcher": identity.launcher, "world_size": identity.world_size,
            "nnodes": identity.nnodes, "created_wall": time.time()}


def is_job_dir(path: Path) -> bool:
    return (Path(path) / JOB_MANIFEST).is_file()


def _read_job(path: Path, wait_s: float = 2.0) -> Optional[dict[str, Any]]:
    """job.json of an existing job directory (it is renamed into place with it, but a
    network filesystem may show the directory a moment before its contents)."""
    deadline = time.monotonic() + wait_s
    while True:
        data = read_json(path / JOB_MANIFEST)
        if data is not None or time.monotonic() >= deadline:
            return data
        time.sleep(0.05)


def _joinable(path: Path, existing: dict[str, Any], identity: JobIdentity) -> bool:
    """May this process join the existing job directory `path`?"""
    if existing.get("job_id") != identity.job_id:
        return False
    if identity.id_kind == "explicit":
        return True    # the user named the job: later launches are more attempts of it
    theirs, ours = existing.get("launch") or "", identity.launch
    if theirs and ours:
        return theirs == ours   # two launches that reused one id are two jobs
    if identity.id_kind == "derived":
        # No token to tell launches apart: join while the job is still going (or just made).
        states = [m.state() for m in members(path)]
        if not states:
            return time.time() - float(existing.get("created_wall") or 0) < _FRESH_S
        return any(s == "running" for s in states)
    return True


def _numbered(entry: str, base: str) -> bool:
    """Is `entry` `base` or `base-<n>`?"""
    return entry == base or (entry.startswith(base + "-") and entry[len(base) + 1:].isdigit())


def find_job_dir(root: Path, identity: JobIdentity) -> Optional[Path]:
    """An existing directory of this job under `root` that this process may join: named
    `<any name>-<launcher>-<short id>[-n]`, or the bare job id[-n] (the older layout)."""
    tail, legacy = _job_tail(identity), identity.job_id
    try:
        entries = sorted(e.name for e in os.scandir(root) if not e.name.startswith("."))
    except OSError:
        return None
    for entry in entries:
        named = re.fullmatch(rf".+-{re.escape(tail)}(-\d+)?", entry) is not None
        if not (named or _numbered(entry, legacy)):
            continue
        path = root / entry
        existing = read_json(path / JOB_MANIFEST)
        if existing is not None and _joinable(path, existing, identity):
            return path
    return None


def open_job_dir(root: Path, identity: JobIdentity, name: str) -> Path:
    """Find or create this job's directory under `root` (atomic; see module docstring).

    Processes of one job that pass one `name` (the usual case: every rank runs one script)
    agree on one directory even when they start together (the rename below is atomic). A
    process that starts later finds the directory whatever name made it (find_job_dir)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    found = find_job_dir(root, identity)
    if found is not None:
        return found
    base = job_dir_name(identity, name)
    for n in range(1, 1000):
        path = root / (base if n == 1 else f"{base}-{n}")
        if not path.exists():
            tmp = root / f".tmp-{base}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            write_json_atomic(tmp / JOB_MANIFEST, job_manifest(identity, name))
            try:
                os.rename(tmp, path)
                return path
            except OSError:   # another process created it first: look at theirs
                _remove_tree(tmp)
        existing = _read_job(path)
        if existing is not None and _joinable(path, existing, identity):
            return path
    raise OSError(f"no free job directory for {base!r} under {root}")


def open_node_dir(job_dir: Path, identity: JobIdentity) -> Path:
    """`<job>/<node>/`, one per machine; two machines with one hostname get distinct names."""
    for n in range(1, 100):
        path = job_dir / (identity.node if n == 1 else f"{identity.node}-{n}")
        path.mkdir(exist_ok=True)
        marker = path / NODE_MANIFEST
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w") as f:
                json.dump({"node": identity.node, "node_key": identity.node_key,
                           "node_rank": identity.node_rank}, f)
            return path
        except FileExistsError:
            pass
        for _ in range(40):   # written right after O_EXCL: give it a moment
            data = read_json(marker)
            if data is not None:
                break
            time.sleep(0.05)
        if data is None or data.get("node_key") == identity.node_key:
            return path
    raise OSError(f"no free node directory for {identity.node!r} in {job_dir}")


def member_dir_name(identity: JobIdentity, role: str = "rank") -> str:
    base = f"{role}{identity.rank}" if role == "rank" else role
    return base if identity.restart == 0 else f"{base}.r{identity.restart}"


def create_member_dir(node_dir: Path, name: str) -> Path:
    """A fresh run directory for this process (never shared: mkdir fails if it exists)."""
    for n in range(1, 1000):
        path = node_dir / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise OSError(f"no free run directory for {name!r} in {node_dir}")


def _remove_tree(path: Path) -> None:
    for p in sorted(path.rglob("*"), reverse=True):
        try:
            p.unlink() if not p.is_dir() else p.rmdir()
        except OSError:
            pass
    try:
        path.rmdir()
    except OSError:
        pass


# -- reading --------------------------------------------------------------------------------------
@dataclass
class Member:
    """One run directory of a job, as found on disk."""

    path: Path
    manifest: dict[str, Any]

    @property
    def job(self) -> dict[str, Any]:
        job = self.manifest.get("job") or {}
        return job if isinstance(job, dict) else {}

    @property
    def identity(self) -> dict[str, Any]:
        ident = self.job.get("identity") or {}
        return ident if isinstance(ident, dict) else {}

    @property
    def node(self) -> str:
        return str(self.job.get("node_dir") or self.identity.get("node") or self.path.parent.name)

    @property
    def attempt_key(self) -> tuple[str, int]:
        ident = self.identity
        restart = ident.get("restart")
        return (str(ident.get("launch") or ""),
                restart if restart.__class__ is int and 0 <= restart < 1 << 30 else 0)

    def summary(self) -> Optional[dict[str, Any]]:
        """The member's summary.json; None when it has none or it is damaged (then it is
        rebuilt from its logs, as a killed member's is)."""
        from ..summary import read_summary
        return read_summary(self.path / SUMMARY, complete=True)

    def state(self) -> str:
        """"finished" (a final summary), "running", or "dead" (its owner provably gone:
        liveness.owner_state)."""
        from ..rundir.liveness import owner_state

        s = self.summary()
        if s is not None and s.get("status") not in (None, "running"):
            return "finished"
        return "running" if owner_state(self.path, self.manifest).alive else "dead"


def members(job_dir: Path) -> Iterator[Member]:
    """Every run directory of a job (node folders, one level down), in a stable order."""
    job_dir = Path(job_dir)
    try:
        nodes = sorted(p for p in job_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return
    for node in nodes:
        yield from node_members(node)


def node_members(node_dir: Path) -> Iterator[Member]:
    """The run directories of one node folder that have a readable run.json, in order."""
    try:
        runs = sorted(p for p in Path(node_dir).iterdir() if p.is_dir())
    except OSError:
        return
    for run in runs:
        manifest = read_json(run / MANIFEST)
        if manifest is not None:
            yield Member(run, manifest)


__all__ = ["JOB_MANIFEST", "Member", "create_member_dir", "find_job_dir", "is_job_dir",
           "job_dir_name", "job_manifest", "job_uid", "member_dir_name", "members",
           "node_members", "open_job_dir", "open_node_dir", "safe_name", "short_id"]
