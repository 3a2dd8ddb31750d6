"""Leaf columns of real parquet files (written by pyarrow from the simulator's own schemas), in the proof's form.

Until the layer's footer decoder is used here, pyarrow's reading of the same footer stands in for it: path,
physical type, logical type and repetition are what both read from the parquet schema.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

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
