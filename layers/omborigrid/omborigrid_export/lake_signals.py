"""The lake's own signals: what a landing shows about the data itself, kept, judged and announced.

A landing that "succeeded" can still hurt the people who read the lake: a column changed type, a day holds a tenth
of its usual rows. After a day lands (its manifest written), :func:`observe` turns each (table, day) of the manifest
into a :class:`~.lake_facts.LandingFact`, compares it with the previous landed day of the same tenant and table
(schema, :mod:`.schema_diff`) and with the volume baseline (:mod:`.volume`), keeps the fact with its verdicts, and
returns the events to announce: "Schema Changed" and "Export Anomalous" (``schemas/``). A delivery that
``SchemaChangePolicy=quarantine`` held back before publication (:mod:`.schema_gate`) is judged by
:func:`judge_quarantined` instead: its changes are announced, nothing of it is kept.

Why the Download function puts them itself (EventBridge PutEvents) instead of returning them to a state that does:
a manifest of an archive can hold several tables and days, so there can be any number of signals; one PutEvents call
sends them in a batch, while a state would need a Map over a list the ASL cannot build. Each event's detail has a
stable ``id`` (tenant, table, day and fingerprint or verdict), so a retried Download that announces a day again is
deduplicated by consumers the way "Export Completed" is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError

from . import lineage
from .catalog_check import Catalog, CatalogCheck
from .errors import ConfigurationError, TransferFailed
from .lake_facts import LakeFacts, LandingFact, facts_of, previous_schema
from .lineage import LineageSender
from .manifest import Manifest
from .models import JobIdentity
from .redact import describe_exception
from .schema_diff import SchemaDiff, diff_schemas
from .schema_gate import HISTORY_DAYS, SchemaHistory
from .volume import Baseline, VolumeCheck, VolumeRule

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

logger = logging.getLogger(__name__)

EVENT_SOURCE = "omborigrid.export"
SCHEMA_CHANGED = "Schema Changed"
EXPORT_ANOMALOUS = "Export Anomalous"
#: PutEvents takes at most 10 entries per call.
PUT_EVENTS_BATCH = 10


@dataclass(frozen=True, slots=True)
class SchemaChange:
    fact: LandingFact
    previous: LandingFact
    diff: SchemaDiff
    #: A breaking change checked against the Glue table (with the catalog on), else None.
    catalog: CatalogCheck | None = None
    #: Where SchemaChangePolicy=quarantine landed the file instead of its table (``s3://…/_quarantine/…/``), else None.
    quarantined_at: str | None = None

    @property
    def holds_back(self) -> bool:
        """Whether this change sends a file to quarantine: breaking, or at odds with the catalog's table."""
        return self.diff.is_breaking or (self.catalog is not None and bool(self.catalog.conflicts))

    def to_detail(self) -> dict[str, Any]:
        fact = self.fact
        # A held-back delivery is its own signal: the forced landing of the same schema later announces it again.
        held = "" if self.quarantined_at is None else f"/quarantined/{fact.job_id}"
        return {
            "id": f"{fact.tenant_id}/{fact.table}/{fact.day}/schema/{fact.schema_fingerprint}{held}",
            "tenantId": fact.tenant_id,
            "table": fact.table,
            "dataDate": fact.day.isoformat(),
            "jobId": fact.job_id,
            "manifestKey": fact.manifest_key,
            "previousDataDate": self.previous.day.isoformat(),
            "previousSchemaFingerprint": self.previous.schema_fingerprint,
            "schemaFingerprint": fact.schema_fingerprint,
            "compatibility": self.diff.compatibility.value,
            "diff": self.diff.to_dict(),
            "catalog": None if self.catalog is None else self.catalog.to_dict(),
            "quarantinedAt": self.quarantined_at,
            "message": self.describe(),
        }

    def describe(self) -> str:
        fact = self.fact
        text = (
            f"The {fact.table} table of tenant {fact.tenant_id} changed its schema on {fact.day} "
            f"({self.diff.compatibility.value}, against {self.previous.day}): {self.diff.describe()}."
        )
        if self.catalog is not None and self.catalog.conflicts:
            catalog = self.catalog
            text += (
                f" Athena reads it through {catalog.database}.{catalog.table}, where {catalog.describe_conflicts()}."
            )
        if self.quarantined_at is not None:
            text += f" SchemaChangePolicy is quarantine: the file was quarantined at {self.quarantined_at}."
        return text


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One table of one day outside its usual volume."""

    fact: LandingFact
    check: VolumeCheck

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.fact.table, "dataDate": self.fact.day.isoformat(), "volume": self.check.to_dict()}

    def describe(self) -> str:
        return f"{self.fact.table}: {self.check.describe()}"


@dataclass(frozen=True, slots=True)
class LandingSignals:
    manifest: Manifest
    facts: tuple[LandingFact, ...]
    schema_changes: tuple[SchemaChange, ...]
    #: Per table and day; announced as one "Export Anomalous" for the export (an archive's tables fall together).
    anomalies: tuple[Anomaly, ...]

    @property
    def empty_days(self) -> list[LandingFact]:
        return [f for f in self.facts if f.empty]

    def anomalous_detail(self) -> dict[str, Any] | None:
        """The "Export Anomalous" detail of this export, or None when no table is anomalous."""
        if not self.anomalies:
            return None
        manifest = self.manifest
        return {
            "id": f"{manifest.tenant_id}/{manifest.date_from}/{manifest.date_to}/{manifest.job_id}/volume",
            "tenantId": manifest.tenant_id,
            "dataDateFrom": manifest.date_from.isoformat(),
            "dataDateTo": manifest.date_to.isoformat(),
            "jobId": manifest.job_id,
            "manifestKey": manifest.manifest_key,
            "tables": [a.to_dict() for a in self.anomalies],
            "message": (
                f"The export of tenant {manifest.tenant_id} for {manifest.date_from} landed an unusual volume: "
                + "; ".join(a.describe() for a in self.anomalies)
                + "."
            ),
        }

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(detail-type, detail) of every event to announce: one per schema change, then the export's anomaly."""
        anomalous = self.anomalous_detail()
        changes = [(SCHEMA_CHANGED, c.to_detail()) for c in self.schema_changes]
        return changes + ([(EXPORT_ANOMALOUS, anomalous)] if anomalous else [])


def observe(manifest: Manifest, store: LakeFacts, rule: VolumeRule, catalog: Catalog | None = None) -> LandingSignals:
    """Judge and keep each (table, day) ``manifest`` landed. Facts without a proof are kept, not judged; a breaking
    change is also checked against ``catalog``'s table of the same name."""
    kept: list[LandingFact] = []
    changes: list[SchemaChange] = []
    anomalies: list[Anomaly] = []
    reach = rule.history_days * (7 if rule.baseline is Baseline.SAME_WEEKDAY else 1)
    for fact in facts_of(manifest):
        history = store.before(fact.tenant_id, fact.table, fact.day, limit=reach)
        change = _schema_change(fact, history)
        announce = change is not None and not _announced_later(store, change)
        check = None
        if fact.rows is not None:
            check = rule.judge(fact.day, fact.rows, [(f.day, f.rows) for f in history if f.rows is not None])
        judged = fact.judged(
            volume=None if check is None else check.verdict.value,
            schema_change=None if change is None else change.diff.compatibility.value,
        )
        store.record(judged)
        kept.append(judged)
        if change is not None and announce:
            checked = catalog.check(fact.table, fact.columns) if catalog and change.diff.is_breaking else None
            changes.append(SchemaChange(judged, change.previous, change.diff, checked))
        if check is not None and check.anomalous:
            anomalies.append(Anomaly(judged, check))
    return LandingSignals(manifest, tuple(kept), tuple(changes), tuple(anomalies))


def judge_quarantined(
    manifest: Manifest, store: SchemaHistory, location: str, catalog: Catalog | None = None
) -> LandingSignals:
    """The signals of a delivery SchemaChangePolicy=quarantine held back (landed at ``location``): its schema changes,
    judged as :func:`observe` judges them, each checked against ``catalog``. Nothing is kept: a quarantined day is no
    landing, and its fact must not become the baseline the next day is compared with (which would then land as a
    change back). No volume verdict either: the day is failed, not anomalous."""
    facts = facts_of(manifest)
    changes: list[SchemaChange] = []
    for fact in facts:
        change = _schema_change(fact, store.before(fact.tenant_id, fact.table, fact.day, limit=HISTORY_DAYS))
        if change is not None:
            checked = catalog.check(fact.table, fact.columns) if catalog else None
            changes.append(SchemaChange(fact, change.previous, change.diff, checked, quarantined_at=location))
    return LandingSignals(manifest, tuple(facts), tuple(changes), ())


def quarantine_sentence(signals: LandingSignals, location: str) -> str:
    """Why a quarantined day failed, and what to do: the message of ``SchemaQuarantined`` (ledger, "Export Failed")."""
    held = [c for c in signals.schema_changes if c.holds_back] or list(signals.schema_changes)
    manifest = signals.manifest
    if held:
        what = "; ".join(
            f"the {c.fact.table} table changed its schema on {c.fact.day}: {c.diff.describe()} "
            f"({'breaking' if c.holds_back else c.diff.compatibility.value}, against {c.previous.day})"
            for c in held
        )
    else:  # the history changed between the landing and now (a day landed meanwhile): the file is held all the same
        what = f"the schema of its files broke with the days landed before {manifest.date_from}"
    return (
        f"The export of tenant {manifest.tenant_id} for {manifest.date_from} was not published: {what}; "
        f"the file was quarantined at {location} (nothing was written under the table); set SchemaChangePolicy=land "
        "or fix the source, then re-export the day with force."
    )


def _schema_change(fact: LandingFact, history: Sequence[LandingFact]) -> SchemaChange | None:
    """The change against the newest earlier landed day that had a schema, if the fingerprints differ."""
    if fact.schema_fingerprint is None:
        return None
    previous = previous_schema(history)
    if previous is None or previous.schema_fingerprint == fact.schema_fingerprint:
        return None
    return SchemaChange(fact, previous, diff_schemas(previous.columns, fact.columns))


def _announced_later(store: LakeFacts, change: SchemaChange) -> bool:
    """Whether the same change was already announced by a later day that landed first (a backfill out of order).

    Then it is not announced again; the mark moves to this day, the first that has the new schema."""
    fact = change.fact
    following = store.next_after(fact.tenant_id, fact.table, fact.day)
    if following is None or following.schema_change is None:
        return False
    if following.schema_fingerprint != fact.schema_fingerprint:
        return False
    store.record(following.judged(volume=following.volume, schema_change=None))
    return True


def publish(events: EventBridgeClient, bus: str, signals: LandingSignals) -> int:
    """Put the signals' events on ``bus``. Returns how many were put; raises TransferFailed when any was refused
    (the day is landed and kept; the Download retry announces again, consumers deduplicate on ``id``)."""
    entries = [
        {"Source": EVENT_SOURCE, "DetailType": kind, "Detail": json.dumps(detail), "EventBusName": bus}
        for kind, detail in signals.events()
    ]
    for start in range(0, len(entries), PUT_EVENTS_BATCH):
        batch = entries[start : start + PUT_EVENTS_BATCH]
        try:
            failed = events.put_events(Entries=batch).get("FailedEntryCount", 0)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError) as exc:
            raise TransferFailed(
                f"The landing's signals could not be put on the event bus {bus}: {describe_exception(exc)}"
            ) from None
        if failed:
            raise TransferFailed(f"The event bus {bus} refused {failed} of the landing's {len(batch)} signal events.")
    return len(entries)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalSettings:
    """The signals' settings, read once per execution environment from the Download function's environment."""

    VARIABLES: ClassVar[tuple[str, ...]] = (
        "EVENT_BUS_NAME",
        "ANOMALY_HISTORY_DAYS",
        "ANOMALY_MIN_HISTORY_DAYS",
        "ANOMALY_LOW_RATIO",
        "ANOMALY_HIGH_RATIO",
        "ANOMALY_BASELINE",
        "ALERT_ON_EMPTY_DAY",
        "ANOMALY_MIN_ROWS",
        "LINEAGE_ENDPOINT",
        "CATALOG_DATABASE",
    )

    #: None: signals are kept in the ledger but not announced (no bus configured).
    event_bus: str | None
    rule: VolumeRule
    #: None: no OpenLineage events are sent (the default).
    lineage_endpoint: str | None = None
    #: The Glue database of the catalog (``EnableCatalog``), or None when the catalog is off.
    catalog_database: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SignalSettings:
        defaults = VolumeRule()

        def number(name: str, default: float) -> float:
            text = environ.get(name, "").strip()
            try:
                return float(text) if text else default
            except ValueError:
                raise ConfigurationError(f"{name} must be a number, not {text!r}.") from None

        baseline = environ.get("ANOMALY_BASELINE", "").strip() or defaults.baseline.value
        if baseline not in {b.value for b in Baseline}:
            raise ConfigurationError(f"ANOMALY_BASELINE must be all-days or same-weekday, not {baseline!r}.")
        alert = environ.get("ALERT_ON_EMPTY_DAY", "false").strip().lower()
        if alert not in ("true", "false", ""):
            raise ConfigurationError(f"ALERT_ON_EMPTY_DAY must be true or false, not {alert!r}.")
        history = number("ANOMALY_HISTORY_DAYS", defaults.history_days)
        minimum = number("ANOMALY_MIN_HISTORY_DAYS", defaults.min_history)
        min_rows = number("ANOMALY_MIN_ROWS", defaults.min_rows)
        if any(value != int(value) for value in (history, minimum, min_rows)):
            raise ConfigurationError(
                "ANOMALY_HISTORY_DAYS, ANOMALY_MIN_HISTORY_DAYS and ANOMALY_MIN_ROWS must be whole numbers."
            )
        rule = VolumeRule(
            history_days=int(history),
            min_history=int(minimum),
            low_ratio=number("ANOMALY_LOW_RATIO", defaults.low_ratio),
            high_ratio=number("ANOMALY_HIGH_RATIO", defaults.high_ratio),
            baseline=Baseline(baseline),
            alert_on_empty=alert == "true",
            min_rows=int(min_rows),
        )
        endpoint = environ.get("LINEAGE_ENDPOINT", "").strip() or None
        if endpoint is not None:
            LineageSender(endpoint)  # refuses a URL that is not http(s) now, not at the first landing
        return cls(
            event_bus=environ.get("EVENT_BUS_NAME", "").strip() or None,
            rule=rule,
            lineage_endpoint=endpoint,
            catalog_database=environ.get("CATALOG_DATABASE", "").strip() or None,
        )


class LakeSignals:
    """What Download calls: :meth:`started` when an export's transfer begins, :meth:`landed` once it landed."""

    def __init__(
        self,
        settings: SignalSettings,
        *,
        store: LakeFacts,
        events: EventBridgeClient,
        glue: Any = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._events = events
        database = settings.catalog_database
        self._catalog = Catalog(glue, database) if database is not None and glue is not None else None
        self._lineage = None if settings.lineage_endpoint is None else LineageSender(settings.lineage_endpoint)
        self._now = now or (lambda: datetime.now(UTC))

    @property
    def catalog(self) -> Catalog | None:
        """The catalog breaking changes are checked against (None when it is off)."""
        return self._catalog

    def started(self, identity: JobIdentity) -> bool | None:
        """Sends the run's START (None when lineage is off; else whether the endpoint took it)."""
        if self._lineage is None:
            return None
        return self._lineage.send(lineage.start_event(identity, now=self._now()))

    def landed(self, manifest: Manifest) -> LandingReport:
        """Keeps and judges the landing's facts, announces its signals, sends the run's COMPLETE."""
        signals = observe(manifest, self._store, self._settings.rule, self._catalog)
        announced = 0 if self._settings.event_bus is None else publish(self._events, self._settings.event_bus, signals)
        lineage_sent = None
        if self._lineage is not None:
            lineage_sent = self._lineage.send(lineage.complete_event(manifest, signals.facts, now=self._now()))
        return LandingReport(signals=signals, announced=announced, lineage_sent=lineage_sent)

    def quarantined(self, manifest: Manifest, location: str) -> LandingReport:
        """Announces the schema changes of a delivery held back in quarantine at ``location`` (nothing is kept; its
        run's FAIL follows from "Export Failed")."""
        signals = judge_quarantined(manifest, self._store, location, self._catalog)
        announced = 0 if self._settings.event_bus is None else publish(self._events, self._settings.event_bus, signals)
        return LandingReport(signals=signals, announced=announced, lineage_sent=None, quarantined=True)


@dataclass(frozen=True, slots=True)
class LandingReport:
    signals: LandingSignals
    announced: int
    lineage_sent: bool | None
    quarantined: bool = False

    def metrics(self) -> dict[str, int]:
        """The counts Download publishes as metrics (the alarms watch them)."""
        signals = self.signals
        counts = {
            "SchemaChanges": len(signals.schema_changes),
            "BreakingSchemaChanges": sum(1 for c in signals.schema_changes if c.diff.is_breaking),
            "VolumeAnomalies": 1 if signals.anomalies else 0,
            "EmptyDays": len(signals.empty_days),
        }
        if self.quarantined:
            counts["SchemaQuarantines"] = 1
        if self.lineage_sent is False:
            counts["LineageEventsNotSent"] = 1
        return counts
