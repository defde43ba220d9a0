"""`uk`, `uk:13`: the GB Carbon Intensity API (NESO), national or one of 17 regions; no key."""

from __future__ import annotations

from typing import Any, Optional

from ...errors import ConfigError
from .base import BaseProvider, Reading, Request, plausible


class UkCarbonIntensity(BaseProvider):
    """api.carbonintensity.org.uk: national `/intensity`, regional `/regional/regionid/{id}`."""

    name = "uk"
    default_base_url = "https://api.carbonintensity.org.uk"
    base_url_env = "ENERGY_TRACKER_UK_CARBON_URL"
    default_zone = "GB"
    source = ("Carbon Intensity API (NESO with the University of Oxford and WWF): operational "
              "(direct) intensity of the GB grid, per half hour")
    licence = "free to use under the API's terms (see its site)"
    url = "https://carbonintensity.org.uk"

    def normalise_zone(self, zone: Optional[str]) -> str:
        if zone is None or zone.strip().upper() in ("", "GB", "NATIONAL"):
            return "GB"
        if zone.strip().isdigit() and 1 <= int(zone) <= 17:
            return str(int(zone))
        raise ConfigError(
            f"uk zone must be a regional id 1-17 (e.g. 'uk:13' for London) or none for GB, "
            f"got {zone!r}."
        )

    def request(self, base_url: str, zone: str, token: Optional[str]) -> Request:
        path = "/intensity" if zone == "GB" else f"/regional/regionid/{zone}"
        return base_url + path, {}, {"Accept": "application/json"}

    def parse(self, payload: Any, zone: str) -> Reading:
        entry = payload["data"][0]
        if zone != "GB":
            # regional answers nest one more level and carry forecasts only
            entry = entry["data"][0]
        intensity = entry["intensity"]
        value = intensity.get("actual")
        if value is None:
            value = intensity["forecast"]
        return Reading(plausible(value), str(entry.get("from", "")))


PROVIDER = UkCarbonIntensity()
