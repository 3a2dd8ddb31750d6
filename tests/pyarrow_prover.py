"""A stand-in content prover for tests: pyarrow reads the footer the layer's own decoder will read.

The signals tier needs manifests that carry proofs (rows, schema) while the layer's parquet prover is not yet wired
into ``runtime.exporter``. This prover satisfies :class:`omborigrid_export.proof.ContentProver` with pyarrow (a dev
dependency, never in a Lambda package): the same two steps (the tail length from the last 8 bytes, then the proof
from the tail), the same leaf columns, and a fingerprint of the same canonical description. Delete it and its use
in ``tests/statemachine/test_lake_signals.py`` once the real prover is wired.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from omborigrid_export.errors import IntegrityError
from omborigrid_export.exporter import Exporter
from omborigrid_export.models import JobIdentity
from omborigrid_export.proof import Column, Proof
from omborigrid_export.settings import Settings

MAGIC = b"PAR1"


class PyarrowProver:
    def tail_length(self, size: int, last8: bytes) -> int:
        if last8[4:] != MAGIC:
            raise IntegrityError("The file does not end with the parquet magic bytes.")
        return min(size, int.from_bytes(last8[:4], "little") + 8)

    def prove(self, tail: bytes, size: int) -> Proof:
        # pyarrow reads a footer only from a whole "file": the tail at its end, zeros before it.
        metadata = pq.read_metadata(pa.BufferReader(b"\0" * (size - len(tail)) + tail))
        schema = metadata.schema
        columns = []
        for index in range(len(schema)):
            column = schema.column(index)
            logical = str(column.logical_type)
            columns.append(
                Column(
                    path=column.path,
                    physical_type=column.physical_type,
                    logical_type=None if logical == "None" else logical.upper(),
                    repetition="OPTIONAL" if column.max_definition_level else "REQUIRED",
                )
            )
        canonical = json.dumps([c.to_dict() for c in columns], sort_keys=True, separators=(",", ":"))
        return Proof(
            rows=metadata.num_rows,
            row_groups=metadata.num_row_groups,
            schema_fingerprint="sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),
            columns=tuple(columns),
            created_by=metadata.created_by,
            event_time_min=None,
            event_time_max=None,
            tenant_ids=(),
        )


def prover_for(identity: JobIdentity, table: str) -> PyarrowProver:
    return PyarrowProver()


def proving_exporter(runtime: Any) -> Any:
    """A replacement of ``runtime.exporter`` that builds the same Exporter with this prover for archive members
    (cached like the original, so ``runtime.reset()`` clears it)."""

    @functools.cache
    def exporter(current: Settings) -> Exporter:
        return Exporter(
            current, runtime.client(current), runtime.s3(current.expected_bucket_owner), prover_for=prover_for
        )

    return exporter
