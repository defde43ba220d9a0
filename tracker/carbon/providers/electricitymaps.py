"""`electricitymaps:ZONE`: Electricity Maps API v3, latest carbon intensity; needs a token."""

from __future__ import annotations

from typing import Any, Optional

from ...errors import ConfigError
from .base import BaseProvider, Reading, Request, plausible

TOKEN_ENV = "ELECTRICITYMAPS_TOKEN"


class ElectricityMaps(BaseProvider):
    """Electricity Maps API v3 `carbon-intensity/latest?zone=...` with an `auth-token` header."""

    name = "electricitymaps"
    default_base_url = "https://api.electricitymaps.com/v3"
    base_url_env = "ENERGY_TRACKER_ELECTRICITYMAPS_URL"
    needs_token = True
    token_env = TOKEN_ENV
    token_url = "https://portal.electricitymaps.com"
    source = ("Electricity Maps API v3 (carbon-intensity/latest): lifecycle intensity by "
              "default, per zone")
    licence = "Electricity Maps API terms of use (a personal token; see its site)"
    url = "https://www.electricitymaps.com"

    def normalise_zone(self, zone: Optional[str]) -> str:
        if not zone or not zone.strip():
            raise ConfigError(
                "electricitymaps needs a zone, e.g. 'electricitymaps:DE' or "
                "'electricitymaps:SE-SE3'."
            )
        return zone.strip().upper()

    def request(self, base_url: str, zone: str, token: Optional[str]) -> Request:
        headers = {"Accept": "application/json", "auth-token": token or ""}
        return base_url + "/carbon-intensity/latest", {"zone": zone}, headers

    def parse(self, payload: Any, zone: str) -> Reading:
        return Reading(plausible(payload["carbonIntensity"]), str(payload.get("datetime", "")))


PROVIDER = ElectricityMaps()
