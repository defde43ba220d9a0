"""region="auto": cloud instance metadata, served by a local stand-in for each cloud."""

from __future__ import annotations

import pytest

from tracker.carbon import detect_region, lookup
from tracker.errors import ConfigError


def base_urls(httpserver):
    return {cloud: httpserver.url_for(f"/{cloud}") for cloud in ("aws", "gcp", "azure")}


def test_aws_imdsv2(httpserver):
    httpserver.expect_request(
        "/aws/latest/api/token", method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    ).respond_with_data("imds-session-token")
    httpserver.expect_request(
        "/aws/latest/meta-data/placement/region",
        headers={"X-aws-ec2-metadata-token": "imds-session-token"},
    ).respond_with_data("eu-north-1")
    code, how = detect_region(timeout_s=0.5, base_urls=base_urls(httpserver))
    assert (code, how) == ("aws:eu-north-1", "AWS instance metadata (IMDSv2)")
    assert lookup(code).mapped_to == "SE-SE3"


def test_gcp_zone_to_region(httpserver):
    httpserver.expect_request(
        "/gcp/computeMetadata/v1/instance/zone", headers={"Metadata-Flavor": "Google"}
    ).respond_with_data(
        "projects/123456/zones/europe-west4-a", headers={"Metadata-Flavor": "Google"}
    )
    code, how = detect_region(timeout_s=0.5, base_urls=base_urls(httpserver))
    assert (code, how) == ("gcp:europe-west4", "GCP metadata server")


def test_gcp_answer_without_metadata_header_is_ignored(httpserver):
    httpserver.expect_request("/gcp/computeMetadata/v1/instance/zone").respond_with_data(
        "projects/1/zones/europe-west4-a"
    )
    with pytest.raises(ConfigError):
        detect_region(timeout_s=0.5, base_urls=base_urls(httpserver))


def test_azure_imds(httpserver):
    httpserver.expect_request(
        "/azure/metadata/instance/compute/location",
        query_string={"api-version": "2021-02-01", "format": "text"},
        headers={"Metadata": "true"},
    ).respond_with_data("westeurope")
    code, how = detect_region(timeout_s=0.5, base_urls=base_urls(httpserver))
    assert (code, how) == ("azure:westeurope", "Azure instance metadata (IMDS)")


def test_nothing_detected_suggests_an_explicit_region(httpserver):
    with pytest.raises(ConfigError, match="Pass an explicit region"):
        detect_region(timeout_s=0.5, base_urls=base_urls(httpserver))
