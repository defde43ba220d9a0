"""Build tracker/embodied/data/embodied.csv from the quoted source table.

    python scripts/build_embodied.py [SOURCE_CSV] [OUT_CSV]

Every row of scripts/embodied_src/figures.csv quotes one published figure (its document, the
place in it, year and licence); this script checks that each row is complete and that the
quote contains the number it claims, then converts it to one unit per kind of row:

- kg_per_unit: a manufacturing footprint per device, server or GB (kg CO2e), amortised later
  over the hardware's lifetime and utilisation (tracker/embodied).
- g_per_eflop_x_tflops: an intensity already amortised by the manufacturer (g CO2e per exaFLOP)
  times the device's FP16 throughput (TFLOPS; dense for the low/central value, sparse for the
  high one) -> kg CO2e per device-second of use.
- boavizta_cpu: Boavizta's CPU formula, (cores x die per core + constant) x die factor + base,
  with its default CPU (24 cores x 0.245 cm2) -> kg CO2e per socket.

No figure without a citation: a row missing any of them stops the build.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "scripts" / "embodied_src" / "figures.csv"
OUT = ROOT / "tracker" / "embodied" / "data" / "embodied.csv"
REQUIRED = ("key", "component", "match", "per", "conversion", "quoted_value", "quoted_unit",
            "quote", "source", "locator", "year", "licence", "scope")
OUT_COLUMNS = ("key", "component", "match", "exclude", "per", "value_kg", "low_kg", "high_kg",
               "amortised", "units_per_server", "source", "locator", "year", "licence",
               "scope", "derivation")
# Boavizta's default CPU (boaviztapi ComponentCPU): 24 cores, 0.245 cm2 of die per core
BOAVIZTA_CORES, BOAVIZTA_DIE_PER_CORE_CM2 = 24, 0.245


def convert(row: dict[str, str]) -> dict[str, object]:
    q = float(row["quoted_value"])
    kind = row["conversion"]
    a = float(row["param_low"]) if row.get("param_low") else None
    b = float(row["param_high"]) if row.get("param_high") else None
    units_per_server = ""
    if kind == "kg_per_unit":
        value = low = high = q
        amortised = "no"
        derivation = f"{q:g} {row['quoted_unit']} as quoted"
        if row["component"] == "server":
            if a is None:
                raise ValueError(f"{row['key']}: a server row needs GPUs per server (param_low)")
            units_per_server = f"{a:g}"
    elif kind == "g_per_eflop_x_tflops":
        if a is None or b is None:
            raise ValueError(f"{row['key']}: needs dense and sparse TFLOPS (param_low/high)")
        value = low = q * a * 1e12 / 1e18 / 1000.0     # g/EFLOP x FLOP/s -> kg/s
        high = q * b * 1e12 / 1e18 / 1000.0
        amortised = "yes"
        derivation = (f"{q:g} g/EFLOP x {a:g} TFLOPS (dense; high: {b:g} sparse) "
                      "= kg CO2e per device-second, amortised as the manufacturer assumes")
    elif kind == "boavizta_cpu":
        if a is None or b is None:
            raise ValueError(f"{row['key']}: needs the core constant and base (param_low/high)")
        value = low = high = (BOAVIZTA_CORES * BOAVIZTA_DIE_PER_CORE_CM2 + a) * q + b
        amortised = "no"
        derivation = (f"({BOAVIZTA_CORES} x {BOAVIZTA_DIE_PER_CORE_CM2} + {a:g}) cm2 x {q:g} "
                      f"kg/cm2 + {b:g} kg = {value:.2f} kg per socket")
    else:
        raise ValueError(f"{row['key']}: unknown conversion {kind!r} (kg_per_unit, "
                         "g_per_eflop_x_tflops, boavizta_cpu)")
    return {"key": row["key"], "component": row["component"], "match": row["match"],
            "exclude": row.get("exclude", ""), "per": row["per"],
            "value_kg": f"{value:.9g}", "low_kg": f"{low:.9g}", "high_kg": f"{high:.9g}",
            "amortised": amortised, "units_per_server": units_per_server,
            "source": row["source"], "locator": row["locator"], "year": row["year"],
            "licence": row["licence"], "scope": row["scope"], "derivation": derivation}


def check(row: dict[str, str], line: int) -> None:
    missing = [k for k in REQUIRED if not (row.get(k) or "").strip()]
    if missing:
        raise ValueError(f"line {line} ({row.get('key')!r}): no {', '.join(missing)}: every "
                         "figure needs its value, quote, document, place, year and licence")
    year = int(row["year"])
    if not 1990 <= year <= 2100:
        raise ValueError(f"line {line}: year {year} is not a publication year")
    if row["quoted_value"] not in row["quote"]:
        raise ValueError(f"line {line} ({row['key']}): the quote does not contain the value "
                         f"{row['quoted_value']!r}")


def build(source: Path = SOURCE, out: Path = OUT) -> list[dict[str, object]]:
    with source.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keys = [r["key"] for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys in {source}")
    built = []
    for i, row in enumerate(rows, start=2):
        check(row, i)
        built.append(convert(row))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=OUT_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(built)
    return built


if __name__ == "__main__":
    args = sys.argv[1:]
    rows = build(Path(args[0]) if args else SOURCE, Path(args[1]) if len(args) > 1 else OUT)
    print(f"wrote {len(rows)} figures")
