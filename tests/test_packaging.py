"""The distribution `trainjoule`, as a user gets it: `python -m build` makes an sdist and a wheel
(the wheel built from the sdist), the wheel installs into a fresh venv, and there a tracked run
works, `import tracker.integrations.huggingface` finds its module, `import integrations` does
not, and both commands (`trainjoule`, `energy-tracker`) run.

The fresh venv gets the wheel from pip (`--no-deps`, no index: it lays the files out and writes
the two commands) and the wheel's core dependencies (Requires-Dist without an extra) copied
from the environment running the tests, file by file from their RECORD; `pip check` then proves
that those satisfy what the wheel declares. The tests use no network, and nvidia-ml-py is on no
local index of the project machines. No torch, no transformers there: the import checks with
the frameworks run the same venv with this environment's site-packages appended behind its own,
so tracker itself still comes from the wheel.

The fast tests check what the build is configured from: every package folder listed in
pyproject.toml, the import graph under installed names, the card's tool version."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from services import require_service

try:
    import tomllib
except ModuleNotFoundError:   # Python < 3.11: the same parser, as a package
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DIST = "trainjoule"
COMMANDS = ("trainjoule", "energy-tracker")
# what the repository holds but the build must not see (big, or machine state)
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "*.pyc", ".mypy_cache",
                                     ".ruff_cache", ".pytest_cache", "energy-runs", "build",
                                     "dist", "*.egg-info", "site")


def _pyproject(root: Path = ROOT) -> dict:
    with open(root / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


# -- what the build is configured from (fast) ---------------------------------------------------
def package_folders(root: Path) -> dict[str, Path]:
    """Installed package name -> folder, for every folder with an __init__.py under tracker/
    and under the folders pyproject.toml maps into tracker (package-dir)."""
    mapped = _pyproject(root)["tool"]["setuptools"].get("package-dir", {})
    roots = {"tracker": root / "tracker", **{n: root / d for n, d in mapped.items()}}
    out: dict[str, Path] = {}
    for name, folder in roots.items():
        for init in sorted(folder.rglob("__init__.py")):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(folder).parts
            out[".".join((name, *rel))] = init.parent
    return out


def unlisted_packages(root: Path) -> tuple[list[str], list[str]]:
    """(package folders missing from [tool.setuptools] packages, listed names with no folder)."""
    listed = set(_pyproject(root)["tool"]["setuptools"]["packages"])
    found = set(package_folders(root))
    return sorted(found - listed), sorted(listed - found)


def test_every_package_folder_is_listed_for_the_build():
    assert unlisted_packages(ROOT) == ([], [])
    found = package_folders(ROOT)
    assert found["tracker.integrations"] == ROOT / "integrations"   # the mapping is there
    assert "tracker.rundir" in found and "integrations" not in found


def test_a_planted_unlisted_package_is_found(tmp_path):
    (tmp_path / "tracker" / "new").mkdir(parents=True)
    (tmp_path / "tracker" / "__init__.py").write_text("")
    (tmp_path / "tracker" / "new" / "__init__.py").write_text("")
    (tmp_path / "plugs").mkdir()
    (tmp_path / "plugs" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackages = ["tracker", "tracker.gone"]\n'
        '[tool.setuptools.package-dir]\n"tracker.plugs" = "plugs"\n')
    assert unlisted_packages(tmp_path) == (["tracker.new", "tracker.plugs"], ["tracker.gone"])


def test_distribution_name_version_and_commands():
    project = _pyproject()["project"]
    assert project["name"] == DIST
    assert project["scripts"] == {c: "tracker.cli:main" for c in COMMANDS}
    # one version: tracker.__version__, which setuptools reads without importing
    assert "version" in project["dynamic"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "tracker.__version__"}


def test_import_graph_names_integrations_as_installed():
    spec = importlib.util.spec_from_file_location("_ig_packaging", ROOT / "scripts" /
                                                  "import_graph.py")
    assert spec is not None and spec.loader is not None
    ig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ig)
    edges = ig.graph()
    assert "integrations" not in edges and "integrations.huggingface" not in edges
    # huggingface.py's `from . import SessionResults` and `from .torch import ...`
    assert {"tracker.integrations", "tracker.integrations.torch"} <= edges[
        "tracker.integrations.huggingface"]
    assert "tracker.config" in edges["tracker.integrations"]


def test_card_names_the_version_that_measured_the_run():
    from tracker import __version__
    from tracker.publish.facts import TOOL, _tool_version
    assert TOOL == DIST
    assert _tool_version({"trainjoule": "9.1"}) == "9.1"
    assert _tool_version({"energy_tracker": "0.0.9"}) == "0.0.9"   # a run from before the rename
    assert _tool_version({}) == __version__


# -- the built distribution (slow) --------------------------------------------------------------
def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 180) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{cmd} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _can_build() -> tuple[bool, str]:
    """`python -m build --no-isolation` needs build and setuptools>=77 here (the test extra)."""
    try:
        importlib.metadata.version("build")
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError as e:
        return False, f"{e.name} is not installed (pip install -e '.[test]')"
    if major < 77:
        return False, f"setuptools {major} < 77 (pip install -e '.[test]')"
    return True, ""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel, built from a copy of the repository (a build writes an
    egg-info folder into its source tree; the checkout stays untouched)."""
    ok, why = _can_build()
    require_service("python -m build", ok, why)
    base = tmp_path_factory.mktemp("build")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
    out = base / "dist"
    # no isolation: the build needs no index; by default build makes the sdist, then the
    # wheel from the unpacked sdist, so a file missing from the sdist fails here
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
         cwd=base)
    wheels = sorted(out.glob(f"{DIST}-*.whl"))
    sdists = sorted(out.glob(f"{DIST}-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0], "src": src}


def _requirements(dist: importlib.metadata.Distribution) -> list[str]:
    """The names a distribution needs without extras (markers evaluated for this Python)."""
    from packaging.requirements import Requirement
    out = []
    for line in dist.requires or ():
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req.name)
    return out


def _copy_installed(names: list[str], site: Path) -> list[str]:
    """Copy the installed distributions `names` and their own requirements, recursively, from
    this environment into `site` (files from their RECORD; scripts outside site-packages are
    left out). Returns the distributions copied."""
    seen: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop()
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{name}, a core dependency, is not installed in the environment "
                        "running the tests", pytrace=False)
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.append(key)
        assert dist.files, f"{name} has no RECORD: cannot copy it"
        for f in dist.files:
            if f.parts[0] == ".." or "__pycache__" in f.parts:
                continue
            source = Path(str(dist.locate_file(f)))
            if source.is_file():
                (site / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, site / f)
        todo.extend(_requirements(dist))
    return seen


def _clean_env(venv_dir: Path) -> dict[str, str]:
    """No PYTHONPATH, no ENERGY_TRACKER_* settings of whoever runs the tests."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENERGY_TRACKER_", "PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass(frozen=True)
class FreshVenv:
    python: Path
    site: Path           # its site-packages, where the wheel went
    bin: Path
    env: dict[str, str]
    cwd: Path


@pytest.fixture(scope="module")
def fresh_venv(built, tmp_path_factory) -> FreshVenv:
    """A plain venv (no system site-packages) with the wheel and its core dependencies."""
    base = tmp_path_factory.mktemp("venv")
    vdir = base / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(vdir)
    python = vdir / "bin" / "python"
    site = Path(_run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path("
                      "'purelib'))"], cwd=base).stdout.strip())
    env = _clean_env(vdir)
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    _run([*pip, "install", "--no-deps", "--no-index", "-q", str(built["wheel"])], cwd=base,
         env=env)
    core = _requirements(importlib.metadata.Distribution.at(_dist_info(site)))
    assert {"psutil", "nvidia-ml-py", "requests"} <= set(core), core
    copied = _copy_installed(core, site)
    assert not {"torch", "transformers", "lightning"} & set(copied), copied
    _run([*pip, "check"], cwd=base, env=env)   # the wheel's Requires-Dist are satisfied
    return FreshVenv(python=python, site=site, bin=vdir / "bin", env=env, cwd=base)


def _dist_info(site: Path) -> Path:
    found = sorted(site.glob(f"{DIST}-*.dist-info"))
    assert len(found) == 1, found
    return found[0]


def _py(v: FreshVenv, code: str, *args: str, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    """Run `code` in the fresh venv, isolated (-I: no cwd or PYTHONPATH on sys.path, so the
    checkout's tracker/ and integrations/ cannot be imported by accident)."""
    cmd = [str(v.python), "-I", "-c", code, *args]
    if check:
        return _run(cmd, cwd=v.cwd, env=v.env)
    return subprocess.run(cmd, cwd=v.cwd, env=v.env, capture_output=True, text=True,
                          timeout=120)


def _tree_files(src: Path) -> set[str]:
    """The files the wheel must hold, by installed path: every file of every package folder
    (modules and package data), from the copy the build saw."""
    out = set()
    for name, folder in package_folders(src).items():
        prefix = Path(*name.split("."))
        for f in folder.iterdir():
            if f.is_file() and f.suffix != ".pyc":
                out.add((prefix / f.name).as_posix())
        for sub in folder.iterdir():   # data folders (no __init__.py): carbon/data, report/page
            if sub.is_dir() and sub.name != "__pycache__" and not (sub / "__init__.py").exists():
                out |= {(prefix / p.relative_to(folder)).as_posix()
                        for p in sub.rglob("*") if p.is_file()}
    return out


@pytest.mark.slow
def test_wheel_holds_the_package_its_data_and_nothing_else(built):
    with zipfile.ZipFile(built["wheel"]) as z:
        names = set(z.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = z.read(info).decode()
        top = z.read(info.replace("entry_points.txt", "top_level.txt")).decode().split()
    files = {n for n in names if ".dist-info/" not in n}
    assert files == _tree_files(built["src"])
    assert {"tracker/integrations/huggingface.py", "tracker/integrations/lightning.py",
            "tracker/integrations/torch.py", "tracker/report/page/report.html.tmpl",
            "tracker/embodied/data/embodied.csv"} <= files
    assert any(n.startswith("tracker/carbon/data/") and n.endswith(".csv") for n in files)
    assert not any(n.startswith(("tests/", "integrations/", "scripts/", "docs/")) for n in files)
    assert top == ["tracker"]
    for command in COMMANDS:
        assert f"{command} = tracker.cli:main" in entry_points
    with tarfile.open(built["sdist"]) as t:
        members = {m.split("/", 1)[1] for m in t.getnames() if "/" in m}
    assert {"pyproject.toml", "README.md", "integrations/huggingface.py",
            "tracker/carbon/data/SOURCES.md"} <= members
    assert not any(m.startswith("tests/") for m in members)   # MANIFEST.in: prune tests


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_tracks_a_run(fresh_venv, tmp_path):
    v = fresh_venv
    code = (
        "import json, sys, importlib.util\n"
        "import tracker\n"
        "from tracker import track\n"
        "with track('wheel-smoke', output_dir=sys.argv[1], region='DE') as run:\n"
        "    sum(i * i for i in range(200_000))\n"
        "print(json.dumps({'file': tracker.__file__, 'run_dir': str(run.run_dir),\n"
        "                  'torch': importlib.util.find_spec('torch') is not None}))\n")
    done = _py(v, code, str(tmp_path / "runs"))
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).is_relative_to(v.site)   # the wheel's, not the checkout's
    assert got["torch"] is False
    run_dir = Path(got["run_dir"])
    assert run_dir.parent == tmp_path / "runs"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["energy_j"] > 0
    assert summary["grid"]["region_code"] == "DE"      # the bundled carbon tables
    assert (run_dir / "report.html").stat().st_size > 0   # the page template (package data)

    for command in COMMANDS:
        helped = _run([str(v.bin / command), "--help"], cwd=tmp_path, env=v.env)
        assert "usage:" in helped.stdout and "report" in helped.stdout
    report = _run([str(v.bin / "trainjoule"), "report", str(run_dir), "--json"],
                  cwd=tmp_path, env=v.env)
    assert json.loads(report.stdout)["name"] == "wheel-smoke"


@pytest.mark.slow
def test_integrations_install_under_tracker_only(fresh_venv):
    v = fresh_venv
    gone = _py(v, "import integrations", check=False)
    assert gone.returncode != 0 and "No module named 'integrations'" in gone.stderr
    code = (
        "import importlib, json\n"
        "import tracker.integrations, tracker.integrations.torch\n"
        "out = {'pkg': tracker.integrations.__file__}\n"
        "for m in ('huggingface', 'lightning'):\n"
        "    try:\n"
        "        importlib.import_module('tracker.integrations.' + m)\n"
        "        out[m] = None\n"
        "    except ImportError as e:\n"
        "        out[m] = [type(e).__name__, e.name, str(e)]\n"
        "print(json.dumps(out))\n")
    got = json.loads(_py(v, code).stdout.strip().splitlines()[-1])
    assert Path(got["pkg"]).parent == v.site / "tracker" / "integrations"
    # without the frameworks: the module is found, and says which package it needs
    kind, name, text = got["huggingface"]
    assert kind == "ModuleNotFoundError" and name == "transformers"
    assert "trainjoule[huggingface]" in text
    assert got["lightning"] is not None and "trainjoule[lightning]" in got["lightning"][2]


@pytest.mark.slow
def test_the_wheels_integrations_load_with_the_frameworks(fresh_venv):
    """The fresh venv, with this environment's site-packages appended behind its own: the
    callbacks import from the wheel's tracker.integrations and subclass the real frameworks."""
    have = all(importlib.util.find_spec(m) is not None for m in ("transformers", "lightning"))
    require_service("transformers and lightning", have,
                    "not installed here (pip install -e '.[test,huggingface,lightning]')")
    v = fresh_venv
    here = sysconfig.get_path("purelib")
    code = (
        "import sys, json\n"
        "sys.path.append(sys.argv[1])\n"
        "import transformers, lightning.pytorch as pl\n"
        "from tracker.integrations.huggingface import EnergyCallback as HF\n"
        "from tracker.integrations.lightning import EnergyCallback as PL\n"
        "import tracker.integrations.huggingface as hf\n"
        "print(json.dumps({'hf': hf.__file__,\n"
        "    'hf_ok': issubclass(HF, transformers.TrainerCallback),\n"
        "    'pl_ok': issubclass(PL, pl.Callback),\n"
        "    'region': HF(region='DE').session.config.get('region')}))\n")
    got = json.loads(_py(v, code, here).stdout.strip().splitlines()[-1])
    assert Path(got["hf"]).is_relative_to(v.site)
    assert got["hf_ok"] and got["pl_ok"]
    assert got["region"] == "DE"
