"""One summary pipeline: a job's summary is the same build as a run's.

The live stop, the rebuild of a killed run and the job merge all end in
summary_build.assemble (the only place a tracker.summary.Summary is constructed); a job of one
process therefore says what that process's own run says: the same energy, devices, windows,
steps, emissions and cost. And the configuration imports nothing above it (it checks options
through accounting/price.py and exporters/options.py, not the builder or the exporters' hub).
"""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest
from conftest import UUIDS, Constant, FakeGPU
from test_layering import _edges

from tracker import track
from tracker.job.merge import merge
from tracker.rebuild import rebuild_summary

ROOT = Path(__file__).resolve().parent.parent
TRACKER = ROOT / "tracker"
FAST = dict(rate_hz=50, counter_interval_s=0.2, cpu=False, ram=False)


def _train(run, steps: int) -> None:
    with run.window("epoch0"):
        for _ in range(steps):
            with run.step(samples=4, tokens=64):
                time.sleep(0.02)
    with run.window("eval", kind="eval"):
        time.sleep(0.05)


def _member_dir(job_dir: Path) -> Path:
    (member,) = [p for p in job_dir.glob("*/rank*") if p.is_dir()]
    return member


def test_a_one_member_job_is_its_members_run(fake_nvml, one_rank, tmp_path):
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)),
              FakeGPU(uuid=UUIDS[1], profile=Constant(120.0)))
    with track("solo", job="one", output_dir=tmp_path, job_timeout_s=0, region="DE",
               price_per_kwh=0.25, currency="EUR", **FAST) as run:
        _train(run, 12)
    job_dir = next(tmp_path.glob("*-one"))   # <name>-<launcher>-<job id>
    run_s = json.loads((_member_dir(job_dir) / "summary.json").read_text())
    job = merge([job_dir])
    assert job.job is not None and job.job["world_size"] == 1

    assert run_s["energy_j"] > 0
    assert job.energy_j == pytest.approx(run_s["energy_j"], rel=1e-12)
    assert job.facility_energy_j == pytest.approx(run_s["facility_energy_j"], rel=1e-12)
    assert job.emissions_kg == pytest.approx(run_s["emissions_kg"], rel=1e-12)
    # the run's intensity is its accounting's (energy in each period, on E_IT(t)); the job's
    # is its emissions over its facility energy: the two energies differ in the 7th digit
    assert job.gco2_per_kwh == pytest.approx(run_s["gco2_per_kwh"], rel=1e-5)
    assert job.cost is not None and job.cost["amount"] == pytest.approx(
        run_s["cost"]["amount"], rel=1e-12)
    assert job.energy_uncertainty_j == pytest.approx(run_s["energy_uncertainty_j"], rel=1e-12)

    assert [(d.name, d.component, d.method) for d in job.devices] == [
        (d["name"], d["component"], d["method"]) for d in run_s["devices"]]
    assert [d.energy_j for d in job.devices] == pytest.approx(
        [d["energy_j"] for d in run_s["devices"]], rel=1e-12)
    assert {c: v.energy_j for c, v in job.components.items()} == pytest.approx(
        {c: v["energy_j"] for c, v in run_s["components"].items()}, rel=1e-12)

    def win(w):
        return (w["name"], w["kind"], w["start_s"], w["end_s"], w["energy_j"],
                w["emissions_g"], w.get("cost"), w["by_component_j"])
    assert [win(w.to_dict()) for w in job.windows] == [win(w) for w in run_s["windows"]]
    assert {w.name for w in job.windows} >= {"epoch0", "eval"}

    steps, own = job.steps, run_s["steps"]
    assert own["count"] == 12 and own["samples"] == 48
    for key in ("count", "energy_j_in_steps", "samples", "tokens", "j_per_sample",
                "j_per_token", "group_size"):
        assert steps[key] == pytest.approx(own[key], rel=1e-12), key
    assert [g["energy_j"] for g in steps["groups"]] == pytest.approx(
        [g["energy_j"] for g in own["groups"]], rel=1e-12)


def test_the_rebuilt_run_and_the_job_of_it_agree(fake_nvml, one_rank, tmp_path):
    """The member rebuilt from its logs (as `report --rebuild` or a killed run's rebuild
    does) and the job merged over that rebuilt summary: the two paths into assemble give the
    same totals and steps."""
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(250.0)))
    with track("solo", job="re", output_dir=tmp_path, job_timeout_s=0, **FAST) as run:
        _train(run, 8)
    job_dir = next(tmp_path.glob("*-re"))   # <name>-<launcher>-<job id>
    member = _member_dir(job_dir)
    rebuilt = rebuild_summary(member, status="finished")
    (member / "summary.json").write_text(json.dumps(rebuilt.to_dict()))
    job = merge([job_dir])
    assert rebuilt.energy_j is not None and rebuilt.energy_j > 0
    assert job.energy_j == pytest.approx(rebuilt.energy_j, rel=1e-12)
    assert job.steps["count"] == rebuilt.steps["count"] == 8
    assert job.steps["energy_j_in_steps"] == pytest.approx(rebuilt.steps["energy_j_in_steps"],
                                                           rel=1e-12)
    assert [g["energy_j"] for g in job.steps["groups"]] == pytest.approx(
        [g["energy_j"] for g in rebuilt.steps["groups"]], rel=1e-12)
    assert [(w.name, w.energy_j) for w in job.windows] == [
        (w.name, pytest.approx(w.energy_j, rel=1e-12)) for w in rebuilt.windows]


# -- the one place a Summary is built -----------------------------------------------------------
def summary_constructions(root: Path) -> list[tuple[str, str]]:
    """(module, enclosing function) of every call of tracker.summary.Summary(...) under
    `root` (a name imported from tracker.summary; other classes called Summary, such as
    TensorBoard's protobuf, are not it)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        mod = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        local = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == \
                    "summary" and (node.level or (node.module or "").startswith("tracker")):
                local |= {a.asname or a.name for a in node.names if a.name == "Summary"}
        if mod == "tracker.summary":
            local.add("Summary")
        out += [(mod, fn) for fn in _calls_of(tree, local)]
    return sorted(set(out))


def _calls_of(tree: ast.AST, names: set[str]) -> list[str]:
    """The innermost function around each call of one of `names` ("<module>" outside any)."""
    found: list[str] = []

    class Visit(ast.NodeVisitor):
        def __init__(self) -> None:
            self.stack = ["<module>"]

        def visit_FunctionDef(self, node: ast.AST) -> None:
            self.stack.append(node.name)   # type: ignore[attr-defined]
            self.generic_visit(node)
            self.stack.pop()

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_Call(self, node: ast.Call) -> None:
            if isinstance(node.func, ast.Name) and node.func.id in names:
                found.append(self.stack[-1])
            self.generic_visit(node)

    Visit().visit(tree)
    return found


def test_a_summary_is_built_only_by_assemble():
    found = summary_constructions(TRACKER)
    # Summary.from_dict reads a saved summary back (cls(...), not a build)
    assert found == [("tracker.summary_build", "assemble")]


def test_a_planted_second_pipeline_is_found(tmp_path):
    pkg = tmp_path / "tracker"
    (pkg / "job").mkdir(parents=True)
    (pkg / "summary_build.py").write_text(
        "from .summary import Summary\ndef assemble(p):\n    return Summary(**p)\n")
    (pkg / "job" / "merge.py").write_text(
        "from ..summary import Summary as S\ndef merge_loaded(m):\n    return S(**m)\n")
    (pkg / "exporters.py").write_text(
        "from tensorboard.compat.proto.summary_pb2 import Summary\n"
        "def log(v):\n    return Summary(value=v)\n")
    assert summary_constructions(pkg) == [("tracker.job.merge", "merge_loaded"),
                                          ("tracker.summary_build", "assemble")]


# -- the configuration is below what is built from it -------------------------------------------
ABOVE_CONFIG = ("tracker.summary_build", "tracker.summary", "tracker.sampler", "tracker.api",
                "tracker.cli", "tracker.assembly", "tracker.rebuild", "tracker.exporters")


def reached(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in edges.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_config_reaches_nothing_above_it():
    edges = _edges()
    got = reached(edges, "tracker.config")
    # what it does import: the price and the exporters' option checks, below it
    assert {"tracker.accounting.price", "tracker.exporters.options"} <= got
    # tracker.exporters is the hub (the package module); exporters.options is below config
    assert sorted(m for m in ABOVE_CONFIG if m in got) == []


def test_a_planted_climb_from_config_is_found():
    edges = {m: set(d) for m, d in _edges().items()}
    edges["tracker.accounting.price"].add("tracker.summary")   # two steps up, via price
    assert "tracker.summary" in reached(edges, "tracker.config")
