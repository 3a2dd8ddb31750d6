"""The document the export state machine carries between its tasks, validated.

Execution input (from StartExport): ``{"job": {"jobId", "tenantId", "dataDateFrom", "dataDateTo"},
"force": false}``; "Prepare Polling" adds ``poll``; "Check Export Status" refreshes ``job`` and ``poll``;
"Download Export" adds ``transfer``. No secret ever travels in it (no download URL, no token).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInput
from .models import ExportRequest, JobIdentity, validate_job_id
from .polling import PollState
from .transfer.checkpoint import Checkpoint

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class JobRef:
    job_id: str
    request: ExportRequest
    force: bool = False

    @classmethod
    def from_dict(cls, data: Any, *, force: Any = False) -> JobRef:
        if not isinstance(data, dict):
            raise InvalidInput("The event has no 'job' object.")
        if not isinstance(force, bool):
            raise InvalidInput("'force' must be true or false.")
        return cls(
            job_id=validate_job_id(data.get("jobId")),
            request=ExportRequest.parse(data.get("tenantId"), data.get("dataDateFrom"), data.get("dataDateTo")),
            force=force,
        )

    @classmethod
    def from_message(cls, body: str) -> JobRef:
        try:
            data = json.loads(body)
        except ValueError:
            raise InvalidInput("The queue message is not JSON.") from None
        if not isinstance(data, dict):
            raise InvalidInput("The queue message is not a JSON object.")
        return cls.from_dict(data, force=data.get("force", False))

    @property
    def identity(self) -> JobIdentity:
        return JobIdentity(self.job_id, self.request)

    def execution_input(self) -> dict[str, Any]:
        return {
            "job": {
                "jobId": self.job_id,
                "tenantId": self.request.tenant_id,
                "dataDateFrom": self.request.date_from.isoformat(),
                "dataDateTo": self.request.date_to.isoformat(),
            },
            "force": self.force,
        }

    def execution_name(self) -> str:
        """Deterministic per job, so a redelivered message cannot start a second execution.

        Step Functions allows 80 characters of [A-Za-z0-9_-]; ids that do not fit are shortened with a
        hash of the full identity so that two jobs never share a name.
        """
        tenant = _NAME_UNSAFE.sub("-", self.request.tenant_id)
        job = _NAME_UNSAFE.sub("-", self.job_id)
        span = f"{self.request.date_from:%Y%m%d}-{self.request.date_to:%Y%m%d}"
        name = f"{tenant}_{span}_{job}"
        if len(name) <= 80 and tenant == self.request.tenant_id and job == self.job_id:
            return name
        digest = hashlib.sha256(f"{self.request.tenant_id}\0{span}\0{self.job_id}".encode()).hexdigest()[:16]
        return f"{tenant[:24]}_{span}_{job[:12]}_{digest}"[:80]


@dataclass(frozen=True, slots=True)
class ExportState:
    ref: JobRef
    poll: PollState | None
    checkpoint: Checkpoint | None
    raw: dict[str, Any]

    @classmethod
    def from_event(cls, event: Any) -> ExportState:
        if not isinstance(event, dict):
            raise InvalidInput("The state machine passed something other than an object.")
        ref = JobRef.from_dict(event.get("job"), force=event.get("force", False))
        poll = PollState.from_dict(event["poll"]) if event.get("poll") is not None else None
        transfer = event.get("transfer")
        checkpoint = None
        if isinstance(transfer, dict) and transfer.get("checkpoint") is not None:
            checkpoint = Checkpoint.from_dict(transfer["checkpoint"])
        return cls(ref=ref, poll=poll, checkpoint=checkpoint, raw=event)
