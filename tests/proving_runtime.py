"""The layer's parquet prover wired into ``runtime.exporter`` for the signals' tests, until the product wires it.

The signals need manifests whose files carry proofs (rows, schema). The prover is on main
(:class:`omborigrid_export.parquet_proof.ParquetProver`), but ``runtime.exporter`` does not pass it to the Exporter
yet; :func:`proving_exporter` is the same function with ``prover_for`` set, to be patched over ``runtime.exporter``
for the tests of ``tests/statemachine/test_lake_signals.py``. Delete this module, and its use there, once
``runtime.exporter`` wires the prover itself.
"""

from __future__ import annotations

import functools
from typing import Any

from omborigrid_export.exporter import Exporter
from omborigrid_export.models import JobIdentity
from omborigrid_export.parquet_proof import ParquetProver
from omborigrid_export.settings import Settings


def prover_for(identity: JobIdentity, table: str) -> ParquetProver:
    return ParquetProver(identity)


def proving_exporter(runtime: Any) -> Any:
    """A replacement of ``runtime.exporter`` that builds the same Exporter with the parquet prover for archive
    members (cached like the original, so ``runtime.reset()`` clears it)."""

    @functools.cache
    def exporter(current: Settings, tenant_id: str) -> Exporter:
        return Exporter(
            current,
            runtime.client(current, tenant_id),
            runtime.s3(current.expected_bucket_owner),
            prover_for=prover_for,
        )

    return exporter
