"""Planning estimates before a run: E = N x P x t x PUE, CO2 = E x C. Nothing here is measured.

Board powers are the vendors' maximum board power / TDP of the named form factor (datasheets);
a real run draws less on average, so an estimate from them is an upper bound.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

from .errors import ConfigError

# Maximum board power (W) from the vendors' datasheets, per form factor.
GPU_BOARD_POWER_W: dict[str, tuple[float, str]] = {
    "V100": (300.0, "NVIDIA V100 SXM2 datasheet"),
    "V100-PCIE": (250.0, "NVIDIA V100 PCIe datasheet"),
    "A100": (400.0, "NVIDIA A100 SXM4 datasheet"),
    "A100-PCIE": (300.0, "NVIDIA A100 80GB PCIe datasheet"),
    "H100": (700.0, "NVIDIA H100 SXM5 datasheet"),
    "H100-PCIE": (350.0, "NVIDIA H100 PCIe datasheet"),
    "H200": (700.0, "NVIDIA H200 SXM datasheet"),
    "GH200": (1000.0, "NVIDIA GH200 datasheet (module, CPU+GPU, configurable 450-1000 W)"),
    "B200": (1000.0, "NVIDIA B200 (HGX B200) datasheet"),
    "L4": (72.0, "NVIDIA L4 datasheet"),
    "L40S": (350.0, "NVIDIA L40S datasheet"),
    "A10": (150.0, "NVIDIA A10 datasheet"),
    "A10G": (150.0, "AWS G5 (NVIDIA A10G) board power"),
    "A40": (300.0, "NVIDIA A40 datasheet"),
    "A6000": (300.0, "NVIDIA RTX A6000 datasheet"),
    "T4": (70.0, "NVIDIA T4 datasheet"),
    "P100": (250.0, "NVIDIA P100 PCIe datasheet"),
    "RTX-3090": (350.0, "NVIDIA GeForce RTX 3090 total graphics power"),
    "RTX-4090": (450.0, "NVIDIA GeForce RTX 4090 total graphics power"),
    "MI250X": (560.0, "AMD Instinct MI250X datasheet"),
    "MI300X": (750.0, "AMD Instinct MI300X datasheet"),
}


def _key(name: str) -> str:
    return name.strip().upper().replace(" ", "-").replace("_", "-").replace("RTX4090", "RTX-4090")


def gpu_board_power(model: str) -> tuple[float, str]:
    """(W, source) for a GPU model name; ConfigError with close matches if unknown."""
    key = _key(model)
    for k in (key, key.replace("NVIDIA-", ""), key.replace("GEFORCE-", "")):
        if k in GPU_BOARD_POWER_W:
            return GPU_BOARD_POWER_W[k]
    close = difflib.get_close_matches(key, list(GPU_BOARD_POWER_W), n=5, cutoff=0.4)
    raise ConfigError(f"unknown GPU model {model!r}."
                      + (f" Did you mean: {', '.join(close)}?" if close else "")
                      + f" Known: {', '.join(GPU_BOARD_POWER_W)}; or give --gpu-watts.")


@dataclass(frozen=True)
class Estimate:
    """A planning estimate, labelled as such (method "estimate")."""

    gpus: int
    gpu_watts: float
    power_source: str
    hours: float
    pue: float
    energy_kwh: float           # facility energy: N x W x h x PUE / 1000
    gco2_per_kwh: float
    emissions_kg: float
    grid: dict[str, Any]
    method: str = "estimate"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        g = self.grid
        return (f"estimate (not measured): {self.gpus} x {self.gpu_watts:g} W ({self.power_source})"
                f" x {self.hours:g} h x PUE {self.pue:g} = {self.energy_kwh:.3f} kWh\n"
                f"  x {self.gco2_per_kwh:.1f} gCO2e/kWh ({g['region_code']}: {g['region_name']}, "
                f"{g['source']}, {g.get('year') or 'year n/a'}) = {self.emissions_kg:.3f} kg CO2e\n"
                "  board power is a maximum: a real run usually draws less (an upper bound).")


def estimate(*, gpus: int, hours: float, gpu_watts: Optional[float] = None,
             gpu_model: Optional[str] = None, region: Optional[str] = None, pue: float = 1.0,
             gco2_per_kwh: Optional[float] = None,
             grid_year: Optional[int] = None) -> Estimate:
    from .carbon import resolve_factor

    if not isinstance(gpus, int) or gpus < 1:
        raise ConfigError(f"--gpus must be a positive integer, got {gpus!r}")
    if not (math.isfinite(hours) and 0 < hours <= 1e6):
        raise ConfigError(f"--hours must be a finite number > 0, got {hours!r}")
    if not (math.isfinite(pue) and 1.0 <= pue <= 10.0):
        raise ConfigError(f"--pue must be in [1, 10] (facility / IT energy), got {pue!r}")
    if (gpu_watts is None) == (gpu_model is None):
        raise ConfigError("give exactly one of --gpu-watts W or --gpu-model NAME")
    if gpu_watts is not None:
        if not (math.isfinite(gpu_watts) and 0 < gpu_watts <= 5000):
            raise ConfigError(f"--gpu-watts must be in (0, 5000], got {gpu_watts!r}")
        watts, source = float(gpu_watts), "given"
    else:
        watts, source = gpu_board_power(gpu_model)  # type: ignore[arg-type]
    factor = resolve_factor(region, gco2_per_kwh=gco2_per_kwh, grid_year=grid_year)
    kwh = gpus * watts * hours * pue / 1000.0
    return Estimate(gpus=gpus, gpu_watts=watts, power_source=source, hours=hours, pue=pue,
                    energy_kwh=kwh, gco2_per_kwh=factor.gco2_per_kwh,
                    emissions_kg=kwh * factor.gco2_per_kwh / 1000.0, grid=factor.to_dict())
