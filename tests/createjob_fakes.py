"""Collaborators of CreateJob's use case for tests: a recording API, and a ledger table on moto's DynamoDB."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws

from omborigrid_export.errors import AuthError
from omborigrid_export.models import ExportJob, ExportRequest, JobStatus
from tests.ledger_table import create_ledger_table


class Api:
    """Creates jobs (ids job-1, job-2...), except for the tenants whose token it refuses (as the client reports a
    401 after its re-read). ``while_creating`` runs inside each create, before the job is returned (a slow POST)."""

    def __init__(self, refuse: Sequence[str] = (), while_creating: Callable[[], None] = lambda: None) -> None:
        self.refuse = set(refuse)
        self.posts: list[ExportRequest] = []
        self._while_creating = while_creating
        self._lock = threading.Lock()

    def __call__(self, request: ExportRequest) -> ExportJob:
        with self._lock:
            self.posts.append(request)
            number = len(self.posts)
        if request.tenant_id in self.refuse:
            raise AuthError(
                f"The OmboriGrid API at api.test refused the token (HTTP 401) when trying to create the export for "
                f"{request.label}: it is missing, wrong or expired."
            )
        self._while_creating()
        return ExportJob(
            id=f"job-{number}",
            status=JobStatus.QUEUED,
            tenant_id=request.tenant_id,
            date_from=request.date_from,
            date_to=request.date_to,
            filename="f.parquet",
        )


@contextmanager
def moto_ledger_table(monkeypatch: pytest.MonkeyPatch, table: str) -> Iterator[Any]:
    """A DynamoDB client on moto (in-process: no socket) holding the ledger table ``table``."""
    for name, value in (
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        create_ledger_table(client, table)
        yield client
