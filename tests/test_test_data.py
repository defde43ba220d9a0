"""The suite reads its data from tests/data only: copies made by scripts/build_test_data.py,
each named in tests/data/SOURCES.md with its origin, licence, size and hash; and no test file
points into the project's shared data directory beside the repository (a plain clone has
none, and its tests must all run)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
# Spelt in two parts so this file does not match its own scan.
SHARED = "sh" + "ared"
# The directory's name after "../", or as a path part in a string: "NAME/data/x", / "NAME" /.
INTO_SHARED = re.compile(r"\.\./" + SHARED + r"\b|[\"']" + SHARED + r"(?:/|[\"'])")


def listed() -> dict[str, tuple[int, str]]:
    """SOURCES.md's table: file -> (bytes, sha256)."""
    rows = {}
    for line in (DATA / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (int(cells[5]), cells[6].strip("`"))
    return rows


def test_every_data_file_is_the_copy_sources_md_names():
    rows = listed()
    on_disk = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*")
                     if p.is_file() and p.name != "SOURCES.md")
    assert on_disk == sorted(rows), "tests/data and its SOURCES.md disagree: rerun " \
                                    "scripts/build_test_data.py"
    for name, (size, digest) in rows.items():
        data = (DATA / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest), name


def test_the_trace_and_the_grid_sources_are_there():
    rows = listed()
    assert "h100_gpt_train.json" in rows
    assert {"grid/countries.csv", "grid/owid_carbon_intensity_elec.csv"} <= set(rows)


def test_the_scan_finds_paths_into_the_shared_directory():
    for text in ('Path(__file__).parents[2] / "' + SHARED + '/data/h100_gpt_train.json"',
                 'REPO.parent / "' + SHARED + '" / "data" / "grid"',
                 "reason='../" + SHARED + "/data/grid not present'"):
        assert INTO_SHARED.search(text), text
    for text in ("counters shared by every process", "three_gpus_shared_prefix(fake_nvml)",
                 'Path(__file__).parent / "data" / "h100_gpt_train.json"'):
        assert not INTO_SHARED.search(text), text


def test_no_test_file_points_into_the_shared_directory():
    hits = []
    for path in sorted(TESTS.rglob("*.py")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if INTO_SHARED.search(line):
                hits.append(f"{path.relative_to(TESTS.parent)}:{i}: {line.strip()}")
    assert not hits, ("tests must read copies in tests/data (scripts/build_test_data.py), "
                      "not the shared directory:\n" + "\n".join(hits))
