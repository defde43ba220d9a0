"""Every part of a Summary is typed: grid, carbon, steps, cost, sampling, breakdown, idle,
advice and a job's part (its nodes, members, attempts, GPU spread, what is missing), and the
job merge reads its members as Summaries, not dicts. summary.json is unchanged by it: a run's
and a job's summary read and written again are the same bytes, and a part still reads as the
dict it was written as.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import UUIDS, Constant, FakeGPU

from tracker import track
from tracker.accounting.advice import Finding
from tracker.accounting.breakdown import IdleAccount, Share
from tracker.accounting.parts import plain
from tracker.carbon.gridfactor import Grid
from tracker.job import merge as merge_module
from tracker.job.part import Attempt, GpuSpread, JobNode, JobPart, Missing, NodeMember
from tracker.summary import Summary

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2)


def _stalled_run(run, sleep) -> None:
    """Start-up, then steps that wait 3x longer for data than they compute."""
    sleep(0.6)
    for _ in range(12):
        sleep(0.15)
        with run.step(samples=2):
            sleep(0.05)


def _busy(n: int) -> tuple[tuple[float, float], ...]:
    return tuple((0.75 + 0.2 * k, 0.75 + 0.2 * k + 0.05) for k in range(n))


def test_a_run_summary_holds_typed_parts_and_reads_back_to_its_bytes(
        fake_nvml, manual_clock, tmp_path):
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0), busy=_busy(12),
                      clock=manual_clock))
    with track("typed", output_dir=tmp_path, region="DE", **FAST) as run:
        _stalled_run(run, manual_clock.sleep)
    s = run.summary
    assert isinstance(s.grid, Grid) and s.grid.region_code == "DE" and s.grid.year
    assert s.breakdown and all(isinstance(p, Share) for p in s.breakdown.values())
    assert sum(p.energy_j for p in s.breakdown.values()) == pytest.approx(s.energy_j)
    idle = s.idle["gpu0"]
    assert isinstance(idle, IdleAccount) and idle.time_share is not None and idle.time_share > 0.5
    kinds = {f.kind for f in s.advice}
    assert all(isinstance(f, Finding) for f in s.advice) and "gpu_idle" in kinds
    # the typed fields and the dict reads are one value
    gap = s.breakdown["between_steps"]
    assert gap["share"] == gap.share and gap.get("method") == gap.method
    assert s.grid["gco2_per_kwh"] == s.grid.gco2_per_kwh == s.gco2_per_kwh

    (path,) = tmp_path.glob("*/summary.json")
    text = path.read_text()
    again = Summary.from_dict(json.loads(text))
    assert json.dumps(again.to_dict()) == json.dumps(json.loads(text))
    assert again.format() == s.format()


def test_a_job_summary_holds_typed_parts_and_reads_back_to_its_bytes(
        fake_nvml, one_rank, tmp_path, monkeypatch):
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)),
              FakeGPU(uuid=UUIDS[1], profile=Constant(60.0)))
    seen: list[object] = []
    real_job_parts = merge_module.job_parts

    def spy(manifest, loaded, **kw):   # what the merge reads its members as
        seen.extend(x.summary for x in loaded)
        return real_job_parts(manifest, loaded, **kw)

    monkeypatch.setattr(merge_module, "job_parts", spy)
    with track("solo", job="typed", output_dir=tmp_path, job_timeout_s=0, region="FR",
               **FAST) as run:
        for _ in range(6):
            with run.step(samples=4):
                pass
    assert seen and all(isinstance(x, Summary) for x in seen)
    job_dir = next(tmp_path.glob("*-typed"))
    data = json.loads((job_dir / "summary.json").read_text())
    job = Summary.from_dict(data)
    part = job.job
    assert isinstance(part, JobPart) and part.world_size == 1 and part.job_id == "typed"
    (node,) = part.nodes or ()
    assert isinstance(node, JobNode) and node.node == "node-a" and node.ranks == [0]
    (member,) = node.members or ()
    assert isinstance(member, NodeMember) and member.status == "finished"
    assert member.rebuilt is False
    assert all(isinstance(a, Attempt) for a in part.attempts or ())
    assert isinstance((part.gpu_energy_spread or {})["node-a"], GpuSpread)
    # the straggler: 60 W beside 300 W, found from the typed spread
    assert "straggler" in {f.kind for f in job.advice}
    # nested parts read as the dicts they were written as
    assert part["nodes"][0]["members"][0]["run"] == member.run
    assert job.to_dict()["job"] == data["job"]
    # the job's summary.json is its Summary's dict, key for key and in order
    assert json.dumps(job.to_dict()) == json.dumps(data)


def test_nested_parts_keep_their_order_and_what_they_do_not_know():
    raw = {"job_id": "j", "future_key": {"x": 1},
           "nodes": [{"node": "n0", "energy_j": 5.0, "new_node_key": True,
                      "members": [{"run": "rank0", "status": "finished", "pid": 7}]}],
           "missing": [{"what": "rank 1", "reason": "left no files"}],
           "gpu_energy_spread": {"n0": {"gpus": 2, "min_j": 1.0, "median_j": 2.0,
                                        "max_j": 2.0}}}
    part = JobPart.from_dict(raw)
    assert part.extra == {"future_key": {"x": 1}}
    assert part.nodes is not None and part.nodes[0].extra == {"new_node_key": True}
    assert part.nodes[0].members is not None and part.nodes[0].members[0].extra == {"pid": 7}
    assert isinstance((part.missing or [])[0], Missing)
    assert json.dumps(part.to_dict()) == json.dumps(raw)   # same keys, same order, same values
    assert part == raw and dict(part)["job_id"] == "j"
    assert plain([part, {"a": part.nodes[0]}]) == [raw, {"a": raw["nodes"][0]}]
    with pytest.raises(KeyError):
        part["nnodes"]   # a field the file did not hold is not a key of the dict it was
    assert part.nnodes is None


def test_a_hand_made_summary_with_dict_parts_holds_typed_parts():
    s = Summary(run_id="r", name="n", status="finished", started_utc="", ended_utc="",
                duration_s=1.0, devices=(), components={}, energy_j=1.0, pue=1.0,
                pue_source="user", facility_energy_j=1.0, emissions_kg=None,
                emissions_rate_kg_per_s=None, gco2_per_kwh=None,
                grid={"region_code": "SE", "gco2_per_kwh": 30.0}, carbon={}, windows=(),
                steps={}, notes=(), degraded=(),
                breakdown={"other": {"energy_j": 1.0, "share": 1.0, "seconds": 1.0,
                                     "method": "counter"}},
                idle={"gpu0": {"energy_j": 0.2, "method": "estimate"}},
                advice=({"kind": "startup", "finding": "slow start", "numbers": {}},),
                job={"job_id": "j", "world_size": 2, "nodes": [{"node": "a"}]})
    assert isinstance(s.grid, Grid) and s.grid.region_code == "SE"
    assert isinstance(s.breakdown["other"], Share) and s.breakdown["other"].seconds == 1.0
    assert isinstance(s.idle["gpu0"], IdleAccount) and s.idle["gpu0"].covered_s is None
    assert isinstance(s.advice[0], Finding) and s.advice[0].finding == "slow start"
    assert isinstance(s.job, JobPart) and isinstance((s.job.nodes or [])[0], JobNode)
    out = s.to_dict()
    assert out["idle"] == {"gpu0": {"energy_j": 0.2, "method": "estimate"}}
    assert out["job"] == {"job_id": "j", "world_size": 2, "nodes": [{"node": "a"}]}
    json.dumps(out)   # plain JSON all the way down
    assert "job 'j' (n, 2 ranks on 1 node(s))" in s.format()


def test_the_merge_reads_no_member_as_a_dict():
    source = (Path(merge_module.__file__).read_text(encoding="utf-8")
              + Path(merge_module.__file__).with_name("windows.py").read_text(encoding="utf-8"))
    assert "summary.get(" not in source and "summary[" not in source
