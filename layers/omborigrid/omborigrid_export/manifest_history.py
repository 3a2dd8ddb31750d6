"""The history of a table read from the manifests in S3: what the CLI compares a day's schema with.

The stack keeps each landing's facts in its ledger table (:mod:`.lake_facts`); ``omborigrid-export run`` has no
ledger, only the lake. The manifest beside each landed day is its commit marker and carries the proof (the schema
fingerprint and columns), so the days before a day are found where the key layout puts them: for each earlier day,
the folder its files land in is listed for manifests (``_*.manifest.json``), and those of this tenant and day
give the facts. So ``SchemaChangePolicy=quarantine`` holds a breaking day back from the CLI as from the stack, against
whatever landed before, by either.

A layout whose folder depends on the job or the file name (``{jobId}``/``{filename}`` above the last segment) cannot
be listed by day: then there is no history, and nothing is held back (the run says so once).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .errors import OmboriGridExportError, TransferFailed
from .lake_facts import SINGLE_FILE_TABLE, LandingFact, facts_of
from .layout import KeyLayout
from .manifest_store import read_manifest_at
from .redact import describe_exception

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

#: How many calendar days before a day are looked at (each costs one LIST): a tenant's day older than this is not
#: what its table reads today.
LOOKBACK_DAYS = 31
_MARK = "0history0"


class ManifestHistory:
    """Landed days of a tenant's table, newest first, from the manifests under ``layout``/``archive_layout``."""

    def __init__(self, s3: S3Client, bucket: str, *, layout: KeyLayout, archive_layout: KeyLayout) -> None:
        self._s3, self._bucket = s3, bucket
        self._layouts = {True: layout, False: archive_layout}
        self._unlistable: set[str] = set()

    def before(self, tenant_id: str, table: str, day: date, *, limit: int) -> list[LandingFact]:
        """Up to ``limit`` facts of ``table`` on the days before ``day``, newest first; the search stops at the first
        day whose facts have a schema (the one a schema is compared with)."""
        found: list[LandingFact] = []
        for back in range(1, LOOKBACK_DAYS + 1):
            earlier = day - timedelta(days=back)
            facts = [f for f in self._facts(tenant_id, table, earlier) if f.table == table and f.day == earlier]
            found.extend(facts)
            if len(found) >= limit or any(f.schema_fingerprint is not None for f in facts):
                break
        return found[:limit]

    def _facts(self, tenant_id: str, table: str, day: date) -> list[LandingFact]:
        folder = self._folder(tenant_id, table, day)
        if folder is None:
            return []
        facts: list[LandingFact] = []
        for key in self._manifest_keys(folder):
            try:
                manifest = read_manifest_at(self._s3, self._bucket, key)
            except OmboriGridExportError as exc:
                logger.warning("the manifest %s cannot be read (%s); not part of the history", key, exc)
                continue
            if manifest is not None and manifest.tenant_id == tenant_id and manifest.date_from == day:
                facts.extend(facts_of(manifest))
        return facts

    def _folder(self, tenant_id: str, table: str, day: date) -> str | None:
        layout = self._layouts[table == SINGLE_FILE_TABLE]
        key = layout.key_for(tenant_id=tenant_id, date_from=day, date_to=day, job_id=_MARK, filename=_MARK, table=table)
        folder = key.rpartition("/")[0]
        if _MARK in folder:
            if layout.template not in self._unlistable:
                self._unlistable.add(layout.template)
                logger.warning(
                    "the key template %s puts the job or file name in the folder: earlier days cannot be found by "
                    "day, so no schema is compared with them",
                    layout.template,
                )
            return None
        return folder + "/" if folder else ""

    def _manifest_keys(self, folder: str) -> list[str]:
        keys: list[str] = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=folder + "_")
            for page in pages:
                keys.extend(o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".manifest.json"))
        except (ClientError, BotoCoreError) as exc:
            raise TransferFailed(
                f"Listing s3://{self._bucket}/{folder} for earlier landings failed: {describe_exception(exc)}"
            ) from None
        return keys
