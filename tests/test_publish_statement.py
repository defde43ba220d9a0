"""The statement for papers (md / latex / text / json) from a real run with a fake H100: its
numbers equal the summary's; the LaTeX compiles (pdflatex) with hostile user strings;
embodied and water appear only with a source or a user-given WUE, labelled estimates."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess

import pytest
from publish_helpers import h100_run, summary_of, tree_state

from tracker import __version__
from tracker.cli import main
from tracker.publish import facts_from_summary
from tracker.publish.statement import latex_escape, render


def test_json_statement_equals_the_summary(tmp_path, fake_h100, capsys):
    run = h100_run(tmp_path)
    before = tree_state(run)
    assert main(["card", str(run), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    s, f = summary_of(run), out["facts"]
    assert f["energy_kwh"] == pytest.approx(s["energy_kwh"], rel=1e-12)
    assert f["facility_energy_kwh"] == pytest.approx(s["facility_energy_kwh"], rel=1e-12)
    assert f["emissions_g"] == pytest.approx(s["emissions_kg"] * 1000, rel=1e-12)
    assert f["energy_uncertainty_kwh"] == pytest.approx(s["energy_uncertainty_j"] / 3.6e6)
    assert f["energy_methods"] == {"gpu": s["components"]["gpu"]["method"]}
    assert f["grid"]["source"] == s["grid"]["source"] and f["grid"]["year"] == s["grid"]["year"]
    # range: the energy bound carried through PUE and the factor
    rel = s["energy_uncertainty_j"] * s["pue"] / s["facility_energy_j"]
    assert f["emissions_high_g"] == pytest.approx(f["emissions_g"] * (1 + rel))
    assert f["embodied"]["method"] == "estimate" and f["water"] is None
    assert out["card"]["co2_eq_emissions"]["emissions"] == pytest.approx(f["emissions_g"],
                                                                          rel=5e-3)
    assert tree_state(run) == before


def test_md_and_text_show_the_checkable_numbers(tmp_path, fake_h100, capsys):
    run = h100_run(tmp_path)
    s = summary_of(run)
    for fmt in ("md", "text"):
        assert main(["card", str(run), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert f"{s['energy_kwh']:.4g} kWh" in out
        assert f"{s['emissions_kg'] * 1000:.4g} gCO2e" in out
        assert f"± {s['energy_uncertainty_j'] * s['pue'] / 3.6e6:.4g}" in out
        assert s["grid"]["source"] in out and str(s["grid"]["year"]) in out
        assert "gpu: counter" in out and "PUE" in out and f"trainjoule {__version__}" in out
        assert "Embodied emissions" in out and "estimate" in out
        assert "NVIDIA Technical Blog" in out           # the H100 figure names its source


def _compile(tmp_path, body: str) -> None:
    if not shutil.which("pdflatex"):
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex is not installed (scripts/ci_services.sh installs "
                        "texlive-latex-base)")
        print("SKIP reason: no TeX engine (pdflatex) installed; apt-get install "
              "texlive-latex-base")
        pytest.skip("no TeX engine (pdflatex) installed")
    doc = tmp_path / "statement.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n"
                   "\\usepackage[T1]{fontenc}\n\\usepackage{tabularx}\n\\begin{document}\n"
                   + body + "\\end{document}\n", encoding="utf-8")
    r = subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode",
                        "-output-directory", str(tmp_path), str(doc)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    assert (tmp_path / "statement.pdf").stat().st_size > 1000


def test_latex_compiles_with_every_special_character(tmp_path, fake_h100, capsys):
    run = h100_run(tmp_path)
    assert main(["card", str(run), "--format", "latex", "--wue", "1.8"]) == 0
    _compile(tmp_path, capsys.readouterr().out)
    # user strings with every LaTeX special character, in the name and the hardware
    s = summary_of(run)
    s["name"] = r"run & 100% $x$ #1 _a {b} ~c ^d \e"
    s["devices"][0]["details"]["model"] = "GPU_{weird} & 50% #2"
    (tmp_path / "hostile").mkdir()
    tex = render(facts_from_summary(s, {}), "latex")
    assert r"run \& 100\% \$x\$ \#1 \_a \{b\} \textasciitilde{}c \textasciicircum{}d " \
           r"\textbackslash{}e" in tex
    _compile(tmp_path / "hostile", tex)


def test_latex_escape_each_special():
    for raw, esc in [("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"),
                     ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"),
                     ("^", r"\textasciicircum{}"), ("\\", r"\textbackslash{}")]:
        assert latex_escape(f"a{raw}b") == f"a{esc}b"


def test_embodied_scales_with_duration_and_unknown_gpu_has_no_figure(tmp_path, fake_h100):
    s = summary_of(h100_run(tmp_path))
    one = facts_from_summary(s, {})
    longer = copy.deepcopy(s)
    longer["duration_s"] = s["duration_s"] * 10
    ten = facts_from_summary(longer, {})
    assert one.embodied is not None and ten.embodied is not None
    assert ten.embodied.kg == pytest.approx(one.embodied.kg * 10, rel=1e-12)
    gpu = next(p for p in one.embodied.parts if p.component == "gpu")
    assert gpu.figure is not None and gpu.figure.key == "gpu_h100_sxm"
    assert gpu.figure.year == 2025 and "NVIDIA" in gpu.figure.source
    assert gpu.low_kg < gpu.high_kg                 # dense vs sparse FP16 reading
    # embodied never enters the operational emissions
    assert one.emissions_g == pytest.approx(s["emissions_kg"] * 1000, rel=1e-12)
    unknown = copy.deepcopy(s)
    unknown["devices"][0]["details"]["model"] = "AMD Instinct MI300X"
    f = facts_from_summary(unknown, {})
    assert f.embodied is not None and f.embodied.unknown == ("AMD Instinct MI300X",)
    assert "no published figure" in render(f, "md")
    assert not facts_from_summary(s, {}, embodied=False).embodied


def test_water_only_with_a_wue_and_labelled_estimate(tmp_path, fake_h100, capsys):
    run = h100_run(tmp_path)
    s = summary_of(run)
    assert main(["card", str(run), "--format", "md"]) == 0
    assert "| Water |" not in capsys.readouterr().out
    assert main(["card", str(run), "--format", "json", "--wue", "1.8"]) == 0
    water = json.loads(capsys.readouterr().out)["facts"]["water"]
    assert water["method"] == "estimate" and water["wue_source"].startswith("user")
    assert water["litres"] == pytest.approx(s["facility_energy_kwh"] * 1.8, rel=1e-12)
    # a run started with wue= carries it in run.json: the card uses it without the flag
    run2 = h100_run(tmp_path / "b", wue=0.5)
    assert main(["card", str(run2), "--format", "json"]) == 0
    water = json.loads(capsys.readouterr().out)["facts"]["water"]
    assert water["litres"] == pytest.approx(summary_of(run2)["facility_energy_kwh"] * 0.5)


def test_job_hardware_counts_every_node():
    devices = [{"name": f"gpu{i}", "component": "gpu", "method": "counter",
                "description": "NVIDIA H100 80GB HBM3 (NVML total-energy counter)",
                "energy_j": 1000.0, "details": {"model": "NVIDIA H100 80GB HBM3"},
                "node": f"node{i // 8}"} for i in range(16)]
    job = {"name": "j", "run_id": "r", "status": "finished", "duration_s": 3600.0,
           "energy_j": 16000.0, "facility_energy_j": 16000.0, "pue": 1.0,
           "pue_source": "default (1.0: IT energy only)", "emissions_kg": 0.001,
           "gco2_per_kwh": 225.0, "grid": {"region_code": "FR", "region_name": "France"},
           "components": {"gpu": {"method": "counter", "energy_j": 16000.0}},
           "devices": devices, "job": {"job_id": "torchrun-1", "world_size": 16,
                                       "nodes": [{"node": "node0"}, {"node": "node1"}]}}
    f = facts_from_summary(job, {}, training_type="pre-training")
    assert f.kind == "job" and f.run_id == "torchrun-1"
    assert f.hardware == "16 × NVIDIA H100 80GB HBM3 on 2 nodes"
    assert "facility overhead (PUE not given: IT energy only)" in f.not_measured
    # 16 GPUs for an hour, plus two 8-GPU servers' share
    assert f.embodied is not None
    server = next(p for p in f.embodied.parts if p.component == "server")
    assert server.count == pytest.approx(2.0)
