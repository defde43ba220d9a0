"""Copy the data files the tests use into tests/data/, so a plain clone runs the whole suite.

Usage: python scripts/build_test_data.py [SHARED_DATA] [--out OUT_DIR]

SHARED_DATA defaults to ../shared/data relative to the repository root; OUT_DIR to tests/data.
Every file is a byte copy (nothing is typed or trimmed): the recorded H100 trace, and the grid
source tables that scripts/build_grid_tables.py reads (tests/test_carbon_tables.py rebuilds the
bundled tables from them byte for byte, so it needs them whole; the raw files under grid/src/
that those tables were made from, ~2 MB, are not read by that build and are not copied).
Writes OUT_DIR/SOURCES.md: each file's origin, source, licence, size and sha256
(tests/test_test_data.py checks the copies against it).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "data"


@dataclass(frozen=True)
class DataFile:
    path: str        # relative to SHARED_DATA, and to OUT_DIR
    source: str      # where its numbers come from (as the shared data's README/SOURCES say)
    licence: str
    used_by: str


GRID_SOURCES = "see grid/README.md, grid/SOURCES.md, grid/SUBNATIONAL_SOURCES.md there"
OWID = "Our World in Data energy dataset, carbon_intensity_elec (Ember Yearly Electricity Data)"
FILES = (
    DataFile("h100_gpt_train.json",
             "an NVML trace recorded on an NVIDIA H100 80GB HBM3 (driver 580.159.04) during a "
             "GPT-style training run: power, instant power, energy counter, utilisation; its "
             "`meta` names the workload",
             "none stated in the shared data (a measurement, not a third party's data set)",
             "test_core_replay.py, test_core_cli.py, test_report_breakdown.py, "
             "test_projection.py"),
    DataFile("grid/countries.csv", f"{OWID}, latest year per country; {GRID_SOURCES}",
             "CC BY 4.0 (Our World in Data; data from Ember)", "test_carbon_tables.py"),
    DataFile("grid/owid_carbon_intensity_elec.csv", f"{OWID}, 1990-2025; {GRID_SOURCES}",
             "CC BY 4.0 (Our World in Data; data from Ember)", "test_carbon_tables.py"),
    DataFile("grid/us_egrid.csv", "US EPA eGRID2023 rev2 output emission rates; "
             + GRID_SOURCES, "US public domain (17 U.S.C. 105)", "test_carbon_tables.py"),
    DataFile("grid/gcp_regions.csv", "Google Cloud region carbon data 2024 "
             "(GoogleCloudPlatform/region-carbon-info); " + GRID_SOURCES, "Apache-2.0",
             "test_carbon_tables.py"),
    DataFile("grid/cloud_regions.csv", "Cloud Carbon Footprint default region grid factors; "
             + GRID_SOURCES, "Apache-2.0", "test_carbon_tables.py"),
    DataFile("grid/electricitymaps_zones.csv", "Electricity Maps yearly averages 2025 "
             "(republished by co2.js); " + GRID_SOURCES,
             "ODbL-1.0 (attribution: contains data from Electricity Maps; share-alike)",
             "test_carbon_tables.py"),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sources_md(out: Path) -> str:
    lines = [
        "# Test data: where each file comes from",
        "",
        "Byte copies of files in the project's shared data set, made by "
        "`python scripts/build_test_data.py`",
        "(its default source directory; `origin` below is the path in it). Do not edit by "
        "hand: rebuild.",
        "The tests read only these copies; tests/test_test_data.py checks them against the "
        "sizes and",
        "hashes below. The licences are those the shared data's README and SOURCES files state.",
        "",
        "| file | origin | source | licence | used by | bytes | sha256 |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in FILES:
        p = out / f.path
        lines.append(f"| `{f.path}` | `data/{f.path}` | {f.source} | {f.licence} | "
                     f"{f.used_by} | {p.stat().st_size} | `{sha256(p)}` |")
    return "\n".join(lines) + "\n"


def build(shared: Path, out: Path) -> list[Path]:
    written = []
    for f in FILES:
        src, dst = shared / f.path, out / f.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        written.append(dst)
    md = out / "SOURCES.md"
    md.write_text(sources_md(out), encoding="utf-8")
    written.append(md)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared_data", nargs="?", type=Path, default=DEFAULT_SHARED_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args(argv)
    missing = [f.path for f in FILES if not (args.shared_data / f.path).is_file()]
    if missing:
        print(f"build_test_data: {args.shared_data} lacks {', '.join(missing)}; give the "
              "shared data directory (default ../shared/data)", file=sys.stderr)
        return 2
    for path in build(args.shared_data, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
