"""``SchemaChangePolicy=quarantine``: a file whose schema breaks its table's is held back before it is published.

Why before, not after: the readers of a table (Athena, Spark) read every file under its location, so the moment a
retyped column is under its final key every query of the table fails (``HIVE_PARTITION_SCHEMA_MISMATCH``), not only
those of that day. The signals judged after a landing (:mod:`.lake_signals`) can only announce that; to keep the
table readable the comparison has to decide *where* the file goes. The proof of a landing decodes the footer before
any upload is completed (ranged reads, a stream's tail, an archive member's tail), so the schema is known in time:
:class:`SchemaGate` is asked right after each proof, in the one place every proof passes through
(:meth:`SchemaGate.guard`, which wraps the content prover), and it raises :class:`BreakingSchema` when the proven
schema breaks with the newest earlier landed day of the same tenant and table (as :mod:`.schema_diff` classifies
it), or, with the catalog on, when a changed schema conflicts with the Glue table's columns. The transfer and the
archive lander abort their open uploads on it, as on any refused proof, and the exporter lands the delivery again
under :func:`~.layout.quarantine_layout` (``{prefix}/_quarantine/…``), outside every table location.

The comparison is the one the signals make after a landing (:func:`~.lake_facts.previous_schema` and
:func:`~.schema_diff.diff_schemas`), so a day is quarantined exactly when it would have been announced as breaking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

from .catalog_check import Catalog, CatalogCheck
from .lake_facts import LandingFact, previous_schema
from .proof import ContentProver, Proof
from .schema_diff import SchemaDiff, diff_schemas
from .settings import SchemaChangePolicy

#: How many earlier landed days are read to find the newest one with a schema (days without a proof have none).
HISTORY_DAYS = 7


class SchemaHistory(Protocol):
    """The landed days of a tenant's table (:class:`~.lake_facts.LakeFacts`, or the CLI's manifests in S3)."""

    def before(self, tenant_id: str, table: str, day: date, *, limit: int) -> list[LandingFact]: ...


@dataclass(frozen=True, slots=True)
class HeldChange:
    """Why a file is held back: its diff against the previous landed day, and the catalog's conflicts."""

    table: str
    day: date
    previous: LandingFact
    diff: SchemaDiff
    catalog: CatalogCheck | None

    def describe(self) -> str:
        """One sentence without its full stop: what changed, and whether it is breaking."""
        text = (
            f"the {self.table} table changed its schema on {self.day} against {self.previous.day}: "
            f"{self.diff.describe()} ({self.diff.compatibility.value})"
        )
        if self.catalog is not None and self.catalog.conflicts:
            catalog = self.catalog
            text += f"; in the catalog table {catalog.database}.{catalog.table}, {catalog.describe_conflicts()}"
        return text


class BreakingSchema(Exception):
    """Raised by a guarded prover: the file must not be published under its final key. Never leaves
    :meth:`~.exporter.Exporter.land`, which lands the delivery in quarantine instead."""

    def __init__(self, change: HeldChange) -> None:
        super().__init__(change.describe())
        self.change = change


class SchemaGate:
    """Judges each proven file of a landing against the history of its table before it is published."""

    def __init__(self, history: SchemaHistory, catalog: Catalog | None = None) -> None:
        self._history = history
        self._catalog = catalog

    def judge(self, tenant_id: str, table: str, day: date, proof: Proof) -> HeldChange | None:
        """The change that holds this file back, or None when it may be published."""
        previous = previous_schema(self._history.before(tenant_id, table, day, limit=HISTORY_DAYS))
        if previous is None or previous.schema_fingerprint == proof.schema_fingerprint:
            return None
        diff = diff_schemas(previous.columns, proof.columns)
        checked = self._catalog.check(table, proof.columns) if self._catalog is not None else None
        if diff.is_breaking or (checked is not None and checked.conflicts):
            return HeldChange(table, day, previous, diff, checked)
        return None

    def guard(self, prover: ContentProver, *, tenant_id: str, table: str, day: date) -> ContentProver:
        """``prover``, whose proofs are also judged: a breaking one raises :class:`BreakingSchema`."""
        return _GuardedProver(prover, self, tenant_id=tenant_id, table=table, day=day)


def gate_for(policy: SchemaChangePolicy, history: SchemaHistory, catalog: Catalog | None = None) -> SchemaGate | None:
    """The gate the policy asks for: with ``quarantine`` a gate over ``history`` (and the catalog when it is on);
    with ``land`` none (breaking changes land, and are announced after the landing)."""
    return SchemaGate(history, catalog) if policy is SchemaChangePolicy.QUARANTINE else None


class _GuardedProver:
    def __init__(self, inner: ContentProver, gate: SchemaGate, *, tenant_id: str, table: str, day: date) -> None:
        self._inner, self._gate = inner, gate
        self._tenant_id, self._table, self._day = tenant_id, table, day

    @property
    def max_tail_bytes(self) -> int:
        return self._inner.max_tail_bytes

    def tail_length(self, size: int, last8: bytes) -> int:
        return self._inner.tail_length(size, last8)

    def prove(self, tail: bytes, size: int) -> Proof:
        proof = self._inner.prove(tail, size)
        held = self._gate.judge(self._tenant_id, self._table, self._day, proof)
        if held is not None:
            raise BreakingSchema(held)
        return proof
