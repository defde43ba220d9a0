"""The code blocks of README.md and docs/*.md run, so a documented example that breaks fails a
test (issue 19 item 8).

Every ```python block runs as a script in a fresh interpreter (this venv's), with its working
directory in tmp_path and ENERGY_TRACKER_OUTPUT_DIR at tmp_path/energy-runs (so `energy-runs/...`
in an example is the run it just made). Every ```bash block that calls `trainjoule` or
`energy-tracker` runs under bash -e in the same kind of directory, where both commands (as
`python -m tracker`, what they are) and `python` are on PATH and `train.py` is a short
stand-in training script (0.3 s of work). A block that cannot run here says so on its first line:

    # doc-test: skip - <why: needs a GPU, a cluster, the network, your own script, ...>

and a script that takes arguments gives them there: `# doc-test: args fit --trainer.max_epochs=1`.
Blocks of other languages (text, yaml, toml, promql) are not run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT_S = 180          # a hang, not a slow machine: the longest example takes ~15 s
MARK = re.compile(r"^#\s*doc-test:\s*(\w[\w-]*)\s*(.*)$")
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
COMMANDS = re.compile(r"(^|[\s;|&(])(trainjoule|energy-tracker)\s", re.M)

# what `train.py` stands for in `trainjoule run -- python train.py`: a short script that does
# some work and tracks nothing itself (as an untouched training script)
TRAIN_PY = """\
import time
t = time.monotonic()
while time.monotonic() - t < 0.3:
    sum(range(10_000))
print("trained")
"""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int          # 1-based line of the opening fence
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def marker(self) -> tuple[str, str] | None:
        """(`skip` | `args`, its text) from the block's first line, or None."""
        first = self.code.splitlines()[0] if self.code.strip() else ""
        m = MARK.match(first.strip())
        return (m.group(1), m.group(2).strip()) if m else None


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [Block(path, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2))
            for m in FENCE.finditer(text)]


def runnable(b: Block) -> bool:
    return b.lang == "python" or (b.lang == "bash" and bool(COMMANDS.search(b.code)))


ALL = [b for path in DOCS for b in blocks(path)]
EXAMPLES = [b for b in ALL if runnable(b)]


def shims(bin_dir: Path) -> None:
    """`trainjoule`, `energy-tracker` and `python` for the bash blocks: this interpreter."""
    bin_dir.mkdir()
    for name, run in (("trainjoule", "-m tracker"), ("energy-tracker", "-m tracker"),
                      ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {run} "$@"\n')
        shim.chmod(0o755)


def run_block(b: Block, tmp_path: Path, *,
              report_html: bool = False) -> subprocess.CompletedProcess[str]:
    """Run one block the way its reader would, in tmp_path."""
    env = dict(os.environ)
    env.pop("ENERGY_TRACKER_RUN_DIR", None)    # never join a run of whoever runs the tests
    env.update(ENERGY_TRACKER_OUTPUT_DIR=str(tmp_path / "energy-runs"),
               ENERGY_TRACKER_REPORT_HTML="1" if report_html else "0",   # 0.1-1 s a run
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TRANSFORMERS_NO_ADVISORY_WARNINGS="1", MPLBACKEND="Agg")
    marker = b.marker
    if b.lang == "python":
        script = tmp_path / "example.py"
        script.write_text(b.code, encoding="utf-8")
        args = shlex.split(marker[1]) if marker and marker[0] == "args" else []
        cmd = [sys.executable, str(script), *args]
    else:
        shims(tmp_path / "bin")
        (tmp_path / "train.py").write_text(TRAIN_PY)
        env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        cmd = ["bash", "-e", "-o", "pipefail", "-c", b.code]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def skipped(b: Block) -> bool:
    return (b.marker or ("", ""))[0] == "skip"


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Any]]]:
    """The selected examples started at once (a few at a time on a machine with the cores),
    each in its own directory: they are independent, so the slow ones (framework imports)
    overlap."""
    chosen = {item.callspec.params["block"].where for item in request.session.items
              if hasattr(item, "callspec") and "block" in item.callspec.params}
    pool = ThreadPoolExecutor(max_workers=max(1, min(4, (os.cpu_count() or 2) // 2)))
    futures = {b.where: pool.submit(run_block, b, tmp_path_factory.mktemp("doc"))
               for b in EXAMPLES if not skipped(b) and b.where in chosen}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("block", EXAMPLES, ids=[b.where for b in EXAMPLES])
def test_doc_example_runs(block: Block, results: dict[str, Future[Any]]) -> None:
    marker = block.marker
    if marker and marker[0] == "skip":
        pytest.skip(f"{block.where}: {marker[1].lstrip('-: ')}")
    done = results[block.where].result()
    assert done.returncode == 0, (
        f"the example at {block.where} failed (exit {done.returncode}):\n{block.code}\n"
        f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-5000:]}")


def test_markers_are_known_and_skips_say_why() -> None:
    for b in ALL:
        marker = b.marker
        if marker is None:
            continue
        kind, text = marker
        assert kind in ("skip", "args"), f"{b.where}: unknown doc-test marker {kind!r}"
        if kind == "skip":
            assert len(text.lstrip("-: ")) >= 10, f"{b.where}: a skip must say why"


def test_most_examples_run() -> None:
    """The opt-out stays the exception: the README's own example and most blocks run."""
    skips = [b.where for b in EXAMPLES if skipped(b)]
    assert len(EXAMPLES) >= 15
    assert len(skips) <= len(EXAMPLES) // 3, skips
    readme = [b for b in EXAMPLES if b.path.name == "README.md" and b.lang == "python"]
    assert any(b.marker is None and "track(" in b.code for b in readme)


def test_a_broken_example_fails(tmp_path: Path) -> None:
    """The runner reports a failing block (a wrong import, a failing command) as a failure."""
    bad_py = Block(ROOT / "README.md", 1, "python", "from tracker import no_such_name\n")
    bad_sh = Block(ROOT / "README.md", 1, "bash", "trainjoule report no-such-run-dir\n")
    (tmp_path / "py").mkdir()
    (tmp_path / "sh").mkdir()
    assert run_block(bad_py, tmp_path / "py").returncode != 0
    assert run_block(bad_sh, tmp_path / "sh").returncode != 0


def test_fences_are_found_as_a_reader_sees_them(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("intro\n\n```python\nprint(1)\n```\n\n```bash\n# doc-test: skip - a cluster"
                    "\ntrainjoule run -- srun x\n```\n\n```text\ntrainjoule report X\n```\n")
    found = blocks(page)
    assert [(b.line, b.lang) for b in found] == [(3, "python"), (7, "bash"), (12, "text")]
    assert [runnable(b) for b in found] == [True, True, False]
    assert found[1].marker == ("skip", "- a cluster")


def test_the_readme_shows_what_its_example_prints(tmp_path: Path) -> None:
    """The end-of-run block shown under the README's example has the lines the example prints
    (numbers, paths and methods differ between machines; the lines and their order do not)."""
    readme = [b for b in blocks(ROOT / "README.md")]
    i = next(n for n, b in enumerate(readme) if b.lang == "python" and b.marker is None
             and "track(" in b.code)
    shown = next(b for b in readme[i + 1:] if b.lang == "text")
    done = run_block(readme[i], tmp_path, report_html=True)   # as a reader runs it
    assert done.returncode == 0, done.stderr[-3000:]

    def heads(text: str) -> list[str]:   # each line's first word
        return [line.split()[0] for line in text.splitlines() if line.strip()]

    printed = heads(done.stderr)
    expected = heads(shown.code)
    assert expected and printed[-len(expected):] == expected, (shown.code, done.stderr)
