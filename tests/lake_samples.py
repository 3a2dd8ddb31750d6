"""Samples of landings for the signals' tests: manifests whose proofs hold the leaf columns of real parquet files
(written by pyarrow from the simulator's own schemas).

Until the layer's footer decoder is used here, pyarrow's reading of the same footer stands in for it: path,
physical type, logical type and repetition are what both read from the parquet schema.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from omborigrid_export.manifest import Manifest, ManifestFile, Timings
from omborigrid_export.proof import Column
from omborigrid_local.simulator.data import events_schema, evolve_events


def columns_of(table: pa.Table) -> tuple[Column, ...]:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    buffer.seek(0)
    schema = pq.read_metadata(buffer).schema
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
    return tuple(columns)


def simulator_events_columns(change: str | None = None) -> tuple[Column, ...]:
    """The events table's columns as the simulator writes them, before or after its schema change knob."""
    table = events_schema().empty_table()
    return columns_of(evolve_events(table, change) if change else table)


DAY1 = date(2026, 1, 1)
NORMAL = simulator_events_columns()
RETYPED = simulator_events_columns("type")


def proof(rows: int, columns: tuple[Column, ...]) -> dict[str, Any]:
    return {
        "rows": rows,
        "rowGroups": 1,
        "schemaFingerprint": "sha256:" + ("b" if columns == RETYPED else "a") * 64,
        "columns": [c.to_dict() for c in columns],
        "createdBy": "parquet-cpp-arrow",
        "eventTimeMin": "2026-01-01T00:00:01Z",
        "eventTimeMax": "2026-01-01T23:59:58Z",
        "tenantIds": ["t1"],
        "checks": {},
    }


def manifest(
    day: date, rows: int | None, columns: tuple[Column, ...] = NORMAL, *, archive: bool = False, tenant: str = "t1"
) -> Manifest:
    tables = ("events", "sessions") if archive else (None,)
    files = tuple(
        ManifestFile(
            key=f"lake/{table or 'x'}/tenant={tenant}/dt={day}/part-0.parquet"
            if archive
            else f"lake/tenant={tenant}/dt={day}/e.parquet",
            bytes=1000 + (rows or 0),
            checksum_crc32="AAAAAA==",
            content_kind="parquet",
            table=table,
            data_date=day if archive else None,
            proof=None if rows is None else proof(rows, columns),
        )
        for table in tables
    )
    landed = datetime(2026, 2, 1, tzinfo=UTC) + timedelta(days=(day - DAY1).days)
    return Manifest(
        tenant_id=tenant,
        date_from=day,
        date_to=day,
        job_id=f"job-{day}",
        source_filename="e.parquet",
        source_host="api.example",
        bucket="lake-bucket",
        key=files[0].key,
        manifest_key=f"lake/tenant={tenant}/dt={day}/_e.parquet.manifest.json",
        bytes=sum(f.bytes for f in files),
        checksum_crc32="AAAAAA==",
        content_kind="zip" if archive else "parquet",
        files=files,
        timings=Timings(None, None, None, None, None, landed),
    )
