"""`energidataservice:DK1` / `DK2`: Energinet's Energi Data Service, CO2Emis; no key."""

from __future__ import annotations

import json
from typing import Any, Optional

from ...errors import ConfigError
from .base import BaseProvider, Reading, Request, plausible


class EnergiDataService(BaseProvider):
    """Energinet's Energi Data Service, dataset CO2Emis (5-minute values per price area)."""

    name = "energidataservice"
    default_base_url = "https://api.energidataservice.dk"
    base_url_env = "ENERGY_TRACKER_ENERGIDATASERVICE_URL"
    source = ("Energi Data Service (Energinet), dataset CO2Emis: Energinet's own 5-minute "
              "figure per Danish price area")
    licence = "Energinet open data under Energi Data Service's terms (see its site)"
    url = "https://www.energidataservice.dk"

    def normalise_zone(self, zone: Optional[str]) -> str:
        area = (zone or "").strip().upper()
        if area not in ("DK1", "DK2"):
            raise ConfigError(
                f"energidataservice zone must be DK1 or DK2 (e.g. 'energidataservice:DK1'), "
                f"got {zone!r}."
            )
        return area

    def request(self, base_url: str, zone: str, token: Optional[str]) -> Request:
        params = {
            "filter": json.dumps({"PriceArea": [zone]}),
            "sort": "Minutes5UTC DESC",
            "limit": "1",
        }
        return base_url + "/dataset/CO2Emis", params, {"Accept": "application/json"}

    def parse(self, payload: Any, zone: str) -> Reading:
        records = payload["records"]
        if not records:
            raise ValueError("no records")
        record = records[0]
        return Reading(plausible(record["CO2Emission"]), str(record.get("Minutes5UTC", "")))


PROVIDER = EnergiDataService()
