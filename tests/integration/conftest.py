"""Fixtures of the integration tier shared by its CLI tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def cli_env(simulator: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a user of the CLI sets: the simulator as the API, the tier's S3, small parts."""
    env = {
        "OMBORIGRID_API_URL": simulator.base_url,
        "OMBORIGRID_TOKEN": simulator.token,
        "OMBORIGRID_ALLOW_LOCAL_URLS": "1",
        "OMBORIGRID_PART_SIZE_MIB": "5",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
