"""What a file is, decided by its bytes and never by its name: the one place content kinds are told apart.

A parquet file starts and ends with ``PAR1``; a zip archive starts with a local file header and holds its
end-of-central-directory record within the last 22 + 65,535 (comment) bytes.
"""

from __future__ import annotations

import enum

PARQUET_MAGIC = b"PAR1"
ZIP_LOCAL_HEADER = b"PK\x03\x04"
ZIP_END_OF_CENTRAL_DIR = b"PK\x05\x06"
#: The zip end-of-central-directory record sits within the last 22 + 65,535 (comment) bytes.
TAIL_BYTES = 22 + 65_535
#: Bytes of the start of a file that tell its kind.
HEAD_BYTES = 8


class ContentKind(enum.StrEnum):
    PARQUET = "parquet"
    ZIP = "zip"
    #: An object found already landed, whose kind was not recorded when it was written.
    UNKNOWN = "unknown"

    @classmethod
    def detect(cls, head: bytes, tail: bytes) -> ContentKind | None:
        """The kind from the first bytes and the last ``TAIL_BYTES``; None when it is neither."""
        if head[:4] == PARQUET_MAGIC and tail[-4:] == PARQUET_MAGIC:
            return cls.PARQUET
        if head[:4] == ZIP_LOCAL_HEADER and ZIP_END_OF_CENTRAL_DIR in tail:
            return cls.ZIP
        return None

    @classmethod
    def from_head(cls, head: bytes) -> ContentKind | None:
        """The kind the first bytes announce (the end of the file must still confirm it)."""
        if head[:4] == PARQUET_MAGIC:
            return cls.PARQUET
        if head[:4] == ZIP_LOCAL_HEADER:
            return cls.ZIP
        return None
