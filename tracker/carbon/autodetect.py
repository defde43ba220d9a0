"""region="auto": ask the cloud instance metadata service which region this machine is in.

Only link-local metadata endpoints are asked (AWS IMDSv2, GCP, Azure IMDS), with short timeouts,
and only when the user opts in. No IP geolocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import requests

from ..errors import ConfigError

DEFAULT_BASE_URLS = {
    "aws": "http://169.254.169.254",
    "gcp": "http://metadata.google.internal",
    "azure": "http://169.254.169.254",
}
AZURE_API_VERSION = "2021-02-01"


def _aws(base: str, timeout_s: float) -> Optional[str]:
    token = requests.put(
        f"{base}/latest/api/token",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        timeout=timeout_s,
    )
    if token.status_code != 200 or not token.text.strip():
        return None
    resp = requests.get(
        f"{base}/latest/meta-data/placement/region",
        headers={"X-aws-ec2-metadata-token": token.text.strip()},
        timeout=timeout_s,
    )
    region = resp.text.strip() if resp.status_code == 200 else ""
    return f"aws:{region}" if region else None


def _gcp(base: str, timeout_s: float) -> Optional[str]:
    resp = requests.get(
        f"{base}/computeMetadata/v1/instance/zone",
        headers={"Metadata-Flavor": "Google"},
        timeout=timeout_s,
    )
    # the answer must come from the metadata server, which sets the same header
    if resp.status_code != 200 or resp.headers.get("Metadata-Flavor") != "Google":
        return None
    zone = resp.text.strip().rsplit("/", 1)[-1]  # projects/123/zones/europe-west4-a
    region = zone.rsplit("-", 1)[0] if zone.count("-") >= 2 else ""
    return f"gcp:{region}" if region else None


def _azure(base: str, timeout_s: float) -> Optional[str]:
    resp = requests.get(
        f"{base}/metadata/instance/compute/location",
        params={"api-version": AZURE_API_VERSION, "format": "text"},
        headers={"Metadata": "true"},
        timeout=timeout_s,
    )
    location = resp.text.strip().lower() if resp.status_code == 200 else ""
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
    for cloud, probe, how in _PROBES:
        try:
            code = probe(urls[cloud].rstrip("/"), timeout_s)
        except requests.RequestException as exc:
            tried.append(f"{cloud}: {type(exc).__name__}")
            continue
        if code:
            return code, how
        tried.append(f"{cloud}: no region in the answer")
    raise ConfigError(
        "region='auto' found no cloud instance metadata (" + "; ".join(tried) + "). "
        "Pass an explicit region such as region='DE', 'US-CA' or 'aws:us-east-1' "
        "(see `energy-tracker regions QUERY`)."
    )
