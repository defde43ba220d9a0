"""What a live grid-intensity provider is: the `Provider` protocol, `BaseProvider`, `Reading`.

A provider turns a zone into one HTTP GET (URL, query parameters, headers) and the JSON answer
into one `Reading`: the intensity (gCO2e/kWh) that stands for "now", which may be the
provider's measured value or its forecast for the current period (the UK API's regional
answers carry forecasts only). Everything around it (polling thread, timeouts, retries,
HTTP 429, cache, fallback to the annual factor, keeping the token out of logs) is done once,
by `tracker.carbon.live.LiveIntensity`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable

from ..gridfactor import MAX_GCO2_PER_KWH

__all__ = ["BaseProvider", "Provider", "Reading", "Request", "plausible"]

# (url, query parameters, headers) of the one GET that fetches a reading
Request = tuple[str, dict[str, str], dict[str, str]]


@dataclass(frozen=True)
class Reading:
    """One value from a provider: gCO2e/kWh and the provider's own timestamp for it."""

    gco2_per_kwh: float
    observed: str


@runtime_checkable
class Provider(Protocol):
    """A live grid-intensity source. Subclass `BaseProvider` or write the members out.

    name: the spec's first part (`live_intensity="name:zone"`), lower case, no ":".
    default_base_url / base_url_env: where to ask, and the environment variable that
        overrides it ("" for none; `intensity_base_url=` overrides both).
    needs_token / token_env / token_url: whether it needs an API key, the environment
        variable it is read from when `token=` is not given, and where to get one.
    default_zone: the zone `normalise_zone(None)` gives, written without ":zone" in notes
        (None: the zone is always written).
    source / licence / url: who publishes the values, on what terms, and where to read them.
    """

    # read-only members: plain class attributes satisfy them
    @property
    def name(self) -> str: ...
    @property
    def default_base_url(self) -> str: ...
    @property
    def base_url_env(self) -> str: ...
    @property
    def needs_token(self) -> bool: ...
    @property
    def token_env(self) -> str: ...
    @property
    def token_url(self) -> str: ...
    @property
    def default_zone(self) -> Optional[str]: ...
    @property
    def source(self) -> str: ...
    @property
    def licence(self) -> str: ...
    @property
    def url(self) -> str: ...

    def normalise_zone(self, zone: Optional[str]) -> str:
        """The canonical zone for the user's one (None: none given); ConfigError if unusable."""
        ...

    def request(self, base_url: str, zone: str, token: Optional[str]) -> Request:
        """The GET for the current value: (url, params, headers). The token goes only here."""
        ...

    def parse(self, payload: Any, zone: str) -> Reading:
        """The reading in a 200 answer's JSON. KeyError, IndexError, TypeError or ValueError
        (e.g. from `plausible`) mean an unexpected answer: the run falls back, and says so."""
        ...


class BaseProvider:
    """Defaults for the `Provider` members; a provider sets its own and the three methods."""

    name = ""
    default_base_url = ""
    base_url_env = ""
    needs_token = False
    token_env = ""
    token_url = ""
    default_zone: Optional[str] = None
    source = ""
    licence = ""
    url = ""

    def normalise_zone(self, zone: Optional[str]) -> str:
        raise NotImplementedError

    def request(self, base_url: str, zone: str, token: Optional[str]) -> Request:
        raise NotImplementedError

    def parse(self, payload: Any, zone: str) -> Reading:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def plausible(value: Any) -> float:
    """`value` as a float if it is a finite number in 0..2000 gCO2e/kWh (else TypeError or
    ValueError, which a fetch reports as an unexpected answer, and the run keeps its factor)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"intensity is not a number (got a {type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:   # an integer too large for a float
        number = math.inf
    if not math.isfinite(number) or not 0 <= number <= MAX_GCO2_PER_KWH:
        shown = f"{number:g}" if math.isfinite(number) else str(number)
        raise ValueError(f"intensity {shown} gCO2e/kWh is outside 0..{MAX_GCO2_PER_KWH:g}")
    return number
