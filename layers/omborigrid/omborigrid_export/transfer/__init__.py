"""Stream an export's file from its download URL into S3: bounded memory, verified, atomic, resumable.

The package is laid out one concern per module, in the manner of s3transfer; this ``__init__`` is its public
surface, and no module imports another's private name:

* :mod:`.manager` — :class:`Transfer`, the front: checks what is already there, probes the source and picks
  the strategy, completes and verifies the upload.
* :mod:`.ranged` — ranged mode: parts fetched as independent byte ranges, several at once.
* :mod:`.streamed` — stream mode, and :class:`StreamedParts`, which cuts any stream into parts.
* :mod:`.multipart` — one multipart upload, the "already there" and "recorded as sent" checks.
* :mod:`.source` — the download URL: safe opening, redirects, refresh on 403; :mod:`.reads` — the probe, the
  first bytes and one byte range; :mod:`.retry` — the one retry loop, its transient errors and backoffs.
* :mod:`.proving` — the content proof from the file's tail (ranged reads, or a stream's tail in memory).
* :mod:`.buffers` — where a part's bytes (and a stream's tail) are held between being read and uploaded.
* :mod:`.checkpoint` and :mod:`.results` — the checkpoint codec and the outcome types (neither imports the
  engine).
* :mod:`.content` — content kinds, by bytes; :mod:`.limits` — S3's limits and part sizing; :mod:`.context` —
  the collaborators a copy is handed; :mod:`.s3config` — the S3 client setting the transfer is cheapest with
  (no SHA-256 of part bodies over TLS).

Memory is bounded by (parts in flight) × (part size), whatever the file size. Nothing is visible under the
final key until CompleteMultipartUpload, which happens only after the size, the file format and a full-object
CRC32 (combined from the parts; S3 verifies it) check out. Close to a deadline (a Lambda's time limit) the
transfer stops starting new parts and returns a :class:`Checkpoint`; the next call resumes from it, after
checking it against S3's ListParts.
"""

from .buffers import ChunkBuffer, PartBody, PartBuffer, RollingTail, SeekableReader
from .checkpoint import Checkpoint
from .content import PARQUET_MAGIC, TAIL_BYTES, ZIP_END_OF_CENTRAL_DIR, ZIP_LOCAL_HEADER, ContentKind
from .context import CheckpointSink, ProgressCallback
from .limits import (
    CHECKPOINT_EVERY_SECONDS,
    DEADLINE_MARGIN_SECONDS,
    MAX_OBJECT_SIZE,
    MAX_PARTS,
    choose_part_size,
)
from .manager import Transfer
from .multipart import MultipartUpload, PartRecord, UploadGone, find_existing, verify_recorded
from .proving import prove_from_stream_tail, prove_with_ranges
from .results import Continued, Landed, LandedObject, TransferOutcome
from .s3config import transfer_s3_config
from .source import JobRefresher
from .streamed import StreamedParts

__all__ = [
    "CHECKPOINT_EVERY_SECONDS",
    "DEADLINE_MARGIN_SECONDS",
    "MAX_OBJECT_SIZE",
    "MAX_PARTS",
    "PARQUET_MAGIC",
    "TAIL_BYTES",
    "ZIP_END_OF_CENTRAL_DIR",
    "ZIP_LOCAL_HEADER",
    "Checkpoint",
    "CheckpointSink",
    "ChunkBuffer",
    "ContentKind",
    "Continued",
    "JobRefresher",
    "Landed",
    "LandedObject",
    "MultipartUpload",
    "PartBody",
    "PartBuffer",
    "PartRecord",
    "ProgressCallback",
    "RollingTail",
    "SeekableReader",
    "StreamedParts",
    "Transfer",
    "TransferOutcome",
    "UploadGone",
    "choose_part_size",
    "find_existing",
    "prove_from_stream_tail",
    "prove_with_ranges",
    "transfer_s3_config",
    "verify_recorded",
]
