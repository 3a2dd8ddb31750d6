"""The checkpoint: where an unfinished transfer stands, and its wire format.

It travels in the Step Functions payload (limit 256 KiB) and in the ledger, so it is compact: the parts are
(number, CRC-32) pairs, 8 base64 characters each, 80 KB at S3's 10,000 parts. Sizes and ETags are not trusted
from here: they are read back from S3's ListParts on resume. This module is the codec only; it imports nothing
of the transfer engine, so the state document and the ledger can read a checkpoint without it.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from .limits import MAX_PARTS, part_count

_PART_CRC = struct.Struct(">HI")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Enough to resume an unfinished transfer in another process."""

    job_id: str
    bucket: str
    key: str
    upload_id: str
    size: int
    part_size: int
    part_crcs: dict[int, int]
    head: bytes = b""

    @property
    def part_numbers(self) -> list[int]:
        return sorted(self.part_crcs)

    @property
    def bytes_done(self) -> int:
        last = part_count(self.size, self.part_size)
        return sum((self.size - (n - 1) * self.part_size) if n == last else self.part_size for n in self.part_crcs)

    def to_dict(self) -> dict[str, Any]:
        packed = b"".join(_PART_CRC.pack(n, self.part_crcs[n]) for n in sorted(self.part_crcs))
        return {
            "jobId": self.job_id,
            "bucket": self.bucket,
            "key": self.key,
            "uploadId": self.upload_id,
            "size": self.size,
            "partSize": self.part_size,
            "bytesDone": self.bytes_done,
            "partCrcs": base64.b64encode(packed).decode(),
            "head": base64.b64encode(self.head).decode(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        if not isinstance(data, dict):
            raise InvalidInput("The transfer checkpoint is not an object.")
        try:
            packed = base64.b64decode(data["partCrcs"], validate=True)
            if len(packed) % _PART_CRC.size:
                raise ValueError("truncated part list")
            crcs = dict(_PART_CRC.iter_unpack(packed))
            checkpoint = cls(
                job_id=str(data["jobId"]),
                bucket=str(data["bucket"]),
                key=str(data["key"]),
                upload_id=str(data["uploadId"]),
                size=int(data["size"]),
                part_size=int(data["partSize"]),
                part_crcs=crcs,
                head=base64.b64decode(data.get("head", ""), validate=True),
            )
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise InvalidInput("The transfer checkpoint is missing fields or has malformed ones.") from None
        if (
            checkpoint.size < 1
            or checkpoint.part_size < 1
            or any(not 1 <= n <= MAX_PARTS for n in checkpoint.part_crcs)
        ):
            raise InvalidInput("The transfer checkpoint has impossible sizes or part numbers.")
        return checkpoint
