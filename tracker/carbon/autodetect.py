"""region="auto": ask the cloud instance metadata service which region this machine is in.

Only link-local metadata endpoints are asked (AWS IMDSv2, GCP, Azure IMDS), with short timeouts,
and only when the user opts in. No IP geolocation. Every request goes through `http.fetch`: a
capped answer, one deadline, and no redirect off the metadata host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import requests

from ..errors import ConfigError
from .http import FetchError, Response, fetch

DEFAULT_BASE_URLS = {
    "aws": "http://169.254.169.254",
    "gcp": "http://metadata.google.internal",
    "azure": "http://169.254.169.254",
}
AZURE_API_VERSION = "2021-02-01"
# a region name or an IMDS session token is a few dozen bytes
METADATA_MAX_BYTES = 64 * 1024


def _get(session: requests.Session, url: str, timeout_s: float, *, method: str = "GET",
         headers: Mapping[str, str], params: Optional[Mapping[str, str]] = None
         ) -> Optional[Response]:
    """A 200 answer, None for any other status (http.fetch: bounded, no redirect off the
    metadata host, so the IMDS session token goes nowhere else)."""
    resp = fetch(session, url, method=method, params=params, headers=headers,
                 timeout_s=timeout_s, max_bytes=METADATA_MAX_BYTES)
    return resp if resp.status == 200 else None


def _aws(session: requests.Session, base: str, timeout_s: float) -> Optional[str]:
    got = _get(session, f"{base}/latest/api/token", timeout_s, method="PUT",
               headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    token = got.text().strip() if got is not None else ""
    if not token:
        return None
    got = _get(session, f"{base}/latest/meta-data/placement/region", timeout_s,
               headers={"X-aws-ec2-metadata-token": token})
    region = got.text().strip() if got is not None else ""
    return f"aws:{region}" if region else None


def _gcp(session: requests.Session, base: str, timeout_s: float) -> Optional[str]:
    got = _get(session, f"{base}/computeMetadata/v1/instance/zone", timeout_s,
               headers={"Metadata-Flavor": "Google"})
    # the answer must come from the metadata server, which sets the same header
    if got is None or got.headers.get("Metadata-Flavor") != "Google":
        return None
    zone = got.text().strip().rsplit("/", 1)[-1]  # projects/123/zones/europe-west4-a
    region = zone.rsplit("-", 1)[0] if zone.count("-") >= 2 else ""
    return f"gcp:{region}" if region else None


def _azure(session: requests.Session, base: str, timeout_s: float) -> Optional[str]:
    got = _get(session, f"{base}/metadata/instance/compute/location", timeout_s,
               params={"api-version": AZURE_API_VERSION, "format": "text"},
               headers={"Metadata": "true"})
    location = got.text().strip().lower() if got is not None else ""
    return f"azure:{location}" if location and location.isalnum() else None


_PROBES = (
    ("aws", _aws, "AWS instance metadata (IMDSv2)"),
    ("gcp", _gcp, "GCP metadata server"),
    ("azure", _azure, "Azure instance metadata (IMDS)"),
)


def detect_region(
    timeout_s: float = 1.0, base_urls: Optional[Mapping[str, str]] = None
) -> tuple[str, str]:
    """(region code, how it was found), e.g. ("aws:us-east-1", "AWS instance metadata (IMDSv2)").

    Raises ConfigError if no metadata service answers.
    """
    urls = {**DEFAULT_BASE_URLS, **(base_urls or {})}
    tried = []
    with requests.Session() as session:
        for cloud, probe, how in _PROBES:
            try:
                code = probe(session, urls[cloud].rstrip("/"), timeout_s)
            except FetchError as exc:
                tried.append(f"{cloud}: {exc}")
                continue
            if code:
                return code, how
            tried.append(f"{cloud}: no region in the answer")
    raise ConfigError(
        "region='auto' found no cloud instance metadata (" + "; ".join(tried) + "). "
        "Pass an explicit region such as region='DE', 'US-CA' or 'aws:us-east-1' "
        "(see `energy-tracker regions QUERY`)."
    )
