"""Where landed files go: the S3 key layout.

Keys come from a template with placeholders. Values that come from outside (tenant id, file name) are
validated before they get here, and the rendered key is checked again, so that no value can climb out of
the prefix or produce an ambiguous key.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import date

from .errors import ConfigurationError, InvalidInput

DEFAULT_KEY_TEMPLATE = "{prefix}/tenant={tenantId}/dt={dataDateFrom}/{filename}"
#: Members of archive deliveries land per table, so one Glue/Athena table covers ``{prefix}/{table}/``.
DEFAULT_ARCHIVE_KEY_TEMPLATE = "{prefix}/{table}/tenant={tenantId}/dt={dataDateFrom}/{filename}"
STAGING_DIR = "_staging"
#: Where ``SchemaChangePolicy=quarantine`` lands a file whose schema breaks its table's: beside the tables, never in
#: one (the leading ``_`` hides it from Glue crawlers and Spark too), one folder per tenant, day and job so an
#: operator finds the day and compares it with what landed before; the table name keeps an archive's members apart.
QUARANTINE_DIR = "_quarantine"
QUARANTINE_KEY_TEMPLATE = (
    "{prefix}/" + QUARANTINE_DIR + "/tenant={tenantId}/dt={dataDateFrom}/job={jobId}/{table}/{filename}"
)
PLACEHOLDERS = frozenset({"prefix", "table", "tenantId", "dataDateFrom", "dataDateTo", "jobId", "filename"})
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9!_.*'()=+-]+$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()=+/-]*$")


@dataclass(frozen=True, slots=True)
class KeyLayout:
    prefix: str = ""
    template: str = DEFAULT_KEY_TEMPLATE

    def __post_init__(self) -> None:
        prefix = self.prefix.strip("/")
        if not _PREFIX_RE.fullmatch(prefix) or any(s in ("", ".", "..") for s in prefix.split("/") if prefix):
            raise ConfigurationError(
                f"The S3 prefix {self.prefix!r} is not acceptable: use letters, digits and -_.=+()!*' "
                "separated by single slashes."
            )
        object.__setattr__(self, "prefix", prefix)
        parsed = list(string.Formatter().parse(self.template))
        if any(spec or conversion for _, name, spec, conversion in parsed if name is not None):
            raise ConfigurationError(
                f"The key template {self.template!r} uses a format spec or conversion; only plain {{name}} "
                "placeholders are allowed."
            )
        fields = {name for _, name, _, _ in parsed if name is not None}
        unknown = fields - PLACEHOLDERS
        if unknown:
            raise ConfigurationError(
                f"The key template {self.template!r} uses unknown placeholders {sorted(unknown)}; "
                f"allowed: {sorted(PLACEHOLDERS)}."
            )
        if "filename" not in fields:
            raise ConfigurationError("The key template must contain {filename} so that files cannot collide.")
        if "tenantId" not in fields:
            raise ConfigurationError("The key template must contain {tenantId} so that tenants cannot collide.")

    def key_for(
        self,
        *,
        tenant_id: str,
        date_from: date,
        date_to: date,
        job_id: str,
        filename: str,
        table: str = "export",
    ) -> str:
        values = {
            "tenantId": tenant_id,
            "dataDateFrom": date_from.isoformat(),
            "dataDateTo": date_to.isoformat(),
            "jobId": job_id,
            "filename": filename,
            "table": table,
        }
        for name, value in values.items():
            if not _SEGMENT_RE.fullmatch(value) or value in (".", ".."):
                raise InvalidInput(f"The value {value!r} for {{{name}}} cannot be part of an S3 key.")
        rendered = self.template.format(prefix=self.prefix, **values)
        segments = [s for s in rendered.split("/") if s]
        if any(s in (".", "..") for s in segments):
            raise InvalidInput(f"The key template rendered an unsafe key {rendered!r}.")
        key = "/".join(segments)
        if self.prefix and not key.startswith(self.prefix + "/"):
            raise ConfigurationError(
                f"The key template {self.template!r} must keep every key under the prefix {self.prefix!r}."
            )
        return key

    def staging_key(self, *, tenant_id: str, job_id: str, filename: str) -> str:
        """Where an archive delivery waits while its members land: hidden (``_``) from query engines."""
        parts = [p for p in (self.prefix, STAGING_DIR, f"tenant={tenant_id}", job_id, filename) if p]
        return "/".join(parts)


def quarantine_layout(prefix: str) -> KeyLayout:
    """The layout of quarantined files under ``prefix`` (the landing's prefix): the same for single files and
    archive members, whatever the configured key templates are."""
    return KeyLayout(prefix=prefix, template=QUARANTINE_KEY_TEMPLATE)


def quarantine_folder(prefix: str, *, tenant_id: str, day: date, job_id: str) -> str:
    """The folder (ending in ``/``) that holds everything one job quarantined for ``day``: what
    :func:`quarantine_layout` renders above the table name."""
    parts = [p for p in (prefix.strip("/"), QUARANTINE_DIR, f"tenant={tenant_id}", f"dt={day.isoformat()}") if p]
    return "/".join([*parts, f"job={job_id}", ""])


def manifest_key_for(data_key: str) -> str:
    """The manifest sits beside the data, named with a leading underscore so that Athena, Glue, Spark
    and pyarrow datasets, which skip files starting with ``_``, never read it as data."""
    head, _, name = data_key.rpartition("/")
    return f"{head}/_{name}.manifest.json" if head else f"_{name}.manifest.json"


def archive_manifest_key(first_member_key: str, job_id: str) -> str:
    """An archive's manifest sits beside its first member, named after the job (an archive has no one file
    to name it after); hidden from query engines like :func:`manifest_key_for`."""
    head, _, _ = first_member_key.rpartition("/")
    return f"{head}/_{job_id}.manifest.json" if head else f"_{job_id}.manifest.json"
