"""What a transfer returns: the object it landed, or the checkpoint to continue from.

``TransferOutcome`` is a union, so an outcome is exactly one of the two: ``match`` on it, or test with
``isinstance``. This module imports nothing of the transfer engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..proof import Proof
from .checkpoint import Checkpoint


@dataclass(frozen=True, slots=True)
class LandedObject:
    """One verified object under its final key."""

    bucket: str
    key: str
    bytes: int
    checksum_crc32: str
    #: A :class:`~omborigrid_export.transfer.ContentKind` value.
    content_kind: str
    job_id: str
    already_existed: bool
    source_host: str
    ranged: bool = False
    parts: int = 0
    version_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: Counters of the transfer (requests, resumes, restarts, URL refreshes, parts, bytes received).
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def checksum(self) -> str:
        return f"crc32:{self.checksum_crc32}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class Landed:
    """The file is under its final key, verified."""

    object: LandedObject
    #: What the content prover showed (None when no prover was given, or the object was already there).
    proof: Proof | None = None


@dataclass(frozen=True, slots=True)
class Continued:
    """The deadline came first: nothing is visible yet; resume from ``checkpoint``."""

    checkpoint: Checkpoint


TransferOutcome = Landed | Continued
