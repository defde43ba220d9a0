"""Benchmark: merging a large distributed job into its report (time and memory).

Writes a synthetic job directory as the tracker leaves it at the end of a data-parallel job of
NODES nodes x GPUS GPUs (one process per GPU, each with its own run directory; local rank 0
also measures the node's CPU and RAM), HOURS long with hourly epochs and evaluations and 1 s
steps, then times, each in a fresh process:
  - `merge()` of the whole job (what the last process does at the end, and `report --rebuild`),
  - `energy-tracker report JOB_DIR` once the job summary exists (reads it, no merge),
  - with `--killed K`, the merge when K processes were SIGKILLed (their summaries are rebuilt
    from a 10 Hz samples.jsonl of the whole run).
Peak memory is the child process's maximum resident set size.

    python scripts/bench_job_merge.py                 # 128 nodes x 8 GPUs x 24 h
    python scripts/bench_job_merge.py --nodes 4 --hours 1 --killed 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracker.carbon import resolve_factor  # noqa: E402

GRID = resolve_factor("DE").to_dict()
G = GRID["gco2_per_kwh"]
GPU_W = 650.0
CPU_W, RAM_W = 180.0, 60.0


def member_files(job_dir: Path, node: int, gpu: int, args: argparse.Namespace, t0: float,
                 job_id: str, killed: bool) -> None:
    rank = node * args.gpus + gpu
    seconds = args.hours * 3600.0
    run = job_dir / f"node{node:03d}" / f"rank{rank}"
    run.mkdir(parents=True)
    start = t0 + 0.002 * gpu                         # ranks start a few ms apart
    devices = [("gpu0", "gpu", "counter", GPU_W * (1.0 - 0.01 * (rank % 7)),
                {"uuid": f"GPU-{node:04d}{gpu:04d}-0000-0000-0000-000000000000",
                 "model": "NVIDIA H100 80GB HBM3"})]
    if gpu == 0:
        devices += [("cpu", "cpu", "modeled", CPU_W, {}), ("ram", "ram", "modeled", RAM_W, {})]
    identity = {"job_id": job_id, "source": "torchrun (TORCHELASTIC_RUN_ID)",
                "id_kind": "launcher", "launch": "bench", "rank": rank,
                "world_size": args.nodes * args.gpus, "local_rank": gpu,
                "local_world_size": args.gpus, "node_rank": node, "nnodes": args.nodes,
                "node": f"node{node:03d}", "node_key": f"node{node:03d}", "restart": 0,
                "max_restarts": 0, "launcher": "torchrun", "extra": {}}
    manifest = {"schema": 1, "run_id": str(uuid.uuid4()), "name": "bench", "start_wall": start,
                "start_monotonic": 0.0, "host": {"hostname": f"node{node:03d}", "pid": 1},
                "devices": [{"name": n, "component": c, "method": m, "description": n,
                             "details": d} for n, c, m, _, d in devices],
                "grid": GRID, "pue": 1.2, "pue_source": "user",
                "job": {"identity": identity, "node_dir": f"node{node:03d}", "ranks": [rank],
                        "claims": []}}
    (run / "run.json").write_text(json.dumps(manifest))
    if killed:
        write_samples(run / "samples.jsonl", devices, seconds)
        old = time.time() - 3600.0   # it died an hour ago: no longer "running" on its host
        os.utime(run / "samples.jsonl", (old, old))
        return
    total = sum(w for _, _, _, w, _ in devices) * seconds
    windows = []
    epoch_s = 3600.0
    for e in range(args.hours):
        a = e * epoch_s + 0.003 * gpu
        windows.append(window(2 * e, f"epoch {e}", "epoch", a, a + epoch_s * 0.95, devices))
        windows.append(window(2 * e + 1, "evaluation", "eval", a + epoch_s * 0.95,
                              a + epoch_s, devices))
    n_steps = int(seconds)
    size = max(1, -(-n_steps // 1000))
    groups = [{"first_step": i, "last_step": min(i + size, n_steps) - 1,
               "steps": min(size, n_steps - i), "start_s": float(i), "end_s": float(i + size),
               "energy_j": sum(w for _, _, _, w, _ in devices) * size * 0.9,
               "samples": 32 * size} for i in range(0, n_steps, size)]
    steps = {"count": n_steps, "energy_j_in_steps": total * 0.9, "group_size": size,
             "groups": groups, "samples": 32 * n_steps}
    summary = {
        "schema": 1, "run_id": manifest["run_id"], "name": "bench", "status": "finished",
        "started_utc": "", "ended_utc": "", "duration_s": seconds, "energy_j": total,
        "pue": 1.2, "pue_source": "user", "facility_energy_j": 1.2 * total,
        "emissions_kg": 1.2 * total / 3.6e6 * G / 1000.0, "gco2_per_kwh": G,
        "grid": manifest["grid"], "carbon": {}, "components": {},
        "devices": [{"name": n, "component": c, "method": m, "description": n,
                     "energy_j": w * seconds, "mean_power_w": w, "peak_power_w": w * 1.1,
                     "status": "ok", "errors": [], "details": d, "start_s": 0.0,
                     "end_s": seconds} for n, c, m, w, d in devices],
        "windows": windows, "steps": steps, "sampling": {}, "notes": [], "degraded": []}
    (run / "summary.json").write_text(json.dumps(summary))


def window(i: int, name: str, kind: str, a: float, b: float, devices: list) -> dict:
    by = {}
    for _, c, _, w, _ in devices:
        by[c] = by.get(c, 0.0) + w * (b - a)
    e = sum(by.values())
    return {"id": i, "name": name, "kind": kind, "parent": None, "start_s": a, "end_s": b,
            "duration_s": b - a, "energy_j": e, "by_component_j": by,
            "emissions_g": 1.2 * e / 3.6e6 * G, "attrs": {},
            "method_by_component": {c: m for _, c, m, _, _ in devices}}


def write_samples(path: Path, devices: list, seconds: float) -> None:
    """What a killed process leaves: a 10 Hz samples.jsonl (power every tick, counter 1 Hz)."""
    with open(path, "w") as f:
        ticks = int(seconds * 10)
        counter = 1.0e9
        for k in range(ticks):
            t = k / 10.0
            d = {}
            for n, _, m, w, _ in devices:
                rec = {"w": w} if m != "modeled" or k % 10 == 0 else {}
                if m == "counter" and k % 10 == 0:
                    rec["c"] = round(counter + w * t, 3)
                if rec:
                    d[n] = rec
            f.write(json.dumps({"t": round(t, 6), "d": d}, separators=(",", ":")) + "\n")


CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
{body}
print(json.dumps({{"s": time.perf_counter() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def timed(body: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), body=body)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=128)
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--hours", type=int, default=24)
    p.add_argument("--killed", type=int, default=0,
                   help="processes SIGKILLed (rebuilt from their samples.jsonl)")
    p.add_argument("--keep", action="store_true", help="keep the synthetic job directory")
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-job-"))
    job = base / "bench-job"
    job.mkdir()
    t_gen = time.perf_counter()
    (job / "job.json").write_text(json.dumps({
        "schema": 1, "kind": "job", "job_id": "bench-job", "job_uid": str(uuid.uuid4()),
        "name": "bench", "source": "bench", "launcher": "torchrun",
        "world_size": args.nodes * args.gpus, "nnodes": args.nodes}))
    t0 = time.time() - args.hours * 3600.0
    n = 0
    for node in range(args.nodes):
        for gpu in range(args.gpus):
            member_files(job, node, gpu, args, t0, "bench-job", killed=n < args.killed)
            n += 1
    size_mb = sum(f.stat().st_size for f in job.rglob("*") if f.is_file()) / 1e6
    print(f"synthetic job: {args.nodes} nodes x {args.gpus} GPUs, {args.hours} h, "
          f"{n} run directories, {size_mb:.0f} MB on disk, {args.killed} killed "
          f"(generated in {time.perf_counter() - t_gen:.1f} s)")
    merged = timed(f"from tracker.job.merge import merge\n"
                   f"s = merge([{str(job)!r}])\n"
                   f"assert len(s.job['nodes']) == {args.nodes}\n"
                   f"from tracker.rundir.runlog import write_json_atomic\n"
                   f"from pathlib import Path\n"
                   f"write_json_atomic(Path({str(job)!r}) / 'summary.json', s.to_dict())")
    print(f"merge (end of job / report --rebuild): {merged['s']:.2f} s, "
          f"peak RSS {merged['rss_mb']:.0f} MB")
    report = timed(f"from tracker.cli import main\n"
                   f"import io, contextlib\n"
                   f"with contextlib.redirect_stdout(io.StringIO()):\n"
                   f"    assert main(['report', {str(job)!r}]) == 0")
    print(f"report of the ended job (reads its summary): {report['s']:.2f} s, "
          f"peak RSS {report['rss_mb']:.0f} MB")
    if args.keep:
        print(f"kept: {job}")
    else:
        shutil.rmtree(base)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
