"""Build the prebuilt region index from the bundled grid tables (tracker/carbon/data/*.csv).

Writes data/region_index.csv (each lookup key -> the byte offset of its region's row, and the
SHA-256 of the tables it was built from) and data/regions_resolved.csv (one row per region,
cloud regions already valued with their grid), so that `tracker.carbon.regions.lookup` reads
one row instead of parsing every table when a tracker is constructed. Run it after
scripts/build_grid_tables.py; an index built from other tables is ignored (the tables are then
parsed in full) and tests/test_cost_construction.py fails until it is rebuilt.

Usage: python scripts/build_region_index.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracker.carbon import regions


def main() -> int:
    keyed, resolved = regions.write_index()
    print(f"wrote {keyed} ({keyed.stat().st_size} B) and {resolved} "
          f"({resolved.stat().st_size} B)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
