"""The electricity price of a run's facility energy: one `Price`, read from the options
(`price_per_kwh=`, `currency=`) or from a run's saved configuration, and the `Cost` it gives
(a summary's typed `cost` part).

Kept here, below the configuration and the summary builder, so both import it downward: the
configuration checks the options into a Price, the builder prices the facility energy with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import ConfigError
from ..units import J_PER_KWH
from .parts import DictPart

__all__ = ["BASIS", "MAX_PRICE_PER_KWH", "Cost", "Price", "parse_price", "saved_price"]

# What a cost is the price of (a run's and a job's summary.json say it in cost.basis).
BASIS = "facility energy (IT x PUE)"
# Above any retail tariff: a larger number is a typo (a price per MWh, or cents).
MAX_PRICE_PER_KWH = 1000.0
_MAX_CURRENCY_CHARS = 8


@dataclass(frozen=True)
class Price:
    """Electricity price per kWh of facility energy, in a named currency."""

    per_kwh: float
    currency: str

    def of_j(self, facility_j: float) -> float:
        return facility_j / J_PER_KWH * self.per_kwh

    def cost(self, facility_j: float) -> Cost:
        return Cost(amount=self.of_j(facility_j), currency=self.currency,
                    price_per_kwh=self.per_kwh, basis=BASIS)


@dataclass(frozen=True, eq=False)
class Cost(DictPart):
    """A summary's `cost`: the electricity cost of its facility energy. `amount` None: not
    summed (a job whose members were priced in different currencies, or some not at all;
    `basis` says which)."""

    amount: Optional[float] = None
    currency: Optional[str] = None
    price_per_kwh: Optional[float] = None   # None in a job priced per node
    basis: Optional[str] = None


def parse_price(price_per_kwh: Any, currency: Any) -> Optional[Price]:
    """A Price from the two options, or None when neither is given; ConfigError (what was
    given, what is accepted) otherwise. Both or neither: a cost without its currency means
    nothing."""
    if price_per_kwh is None and currency is None:
        return None
    if price_per_kwh is None:
        raise ConfigError(f"currency={currency!r} was given without price_per_kwh=; give both "
                          "(e.g. price_per_kwh=0.21, currency=\"EUR\") or neither")
    if isinstance(price_per_kwh, bool):
        raise ConfigError(f"price_per_kwh must be a number (price of 1 kWh), got {price_per_kwh!r}")
    try:
        value = float(price_per_kwh)
    except (TypeError, ValueError):
        raise ConfigError(f"price_per_kwh must be a number, got {price_per_kwh!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_PRICE_PER_KWH:
        raise ConfigError(f"price_per_kwh={price_per_kwh!r} is out of range "
                          f"[0, {MAX_PRICE_PER_KWH:g}]: the price of 1 kWh of electricity, "
                          "e.g. 0.21")
    if not isinstance(currency, str) or not currency.strip() or \
            len(currency.strip()) > _MAX_CURRENCY_CHARS:
        raise ConfigError(f"price_per_kwh needs currency= as a short code such as \"EUR\" or "
                          f"\"USD\", got {currency!r}")
    return Price(value, currency.strip())


def saved_price(config: Mapping[str, Any]) -> tuple[Optional[Price], Optional[str]]:
    """The Price of a run's saved configuration (run.json's `config`, untrusted: a rebuild
    reads it), and a note when the two fields are there but unusable (then no cost)."""
    if config.get("price_per_kwh") is None or not config.get("currency"):
        return None, None
    raw = config["price_per_kwh"]
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):   # JSON: a number or not
        return None, "price_per_kwh/currency are not usable: no cost"
    try:
        return parse_price(config["price_per_kwh"], config["currency"]), None
    except ConfigError:
        return None, "price_per_kwh/currency are not usable: no cost"
