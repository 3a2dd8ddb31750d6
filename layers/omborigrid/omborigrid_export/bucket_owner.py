"""Pin the account that must own every bucket an S3 client touches (``ExpectedBucketOwner``).

Bucket names are global: a landing bucket that was deleted and re-created by another account, or a typo that
names someone else's bucket, would otherwise receive the tenant's data. With ``ExpectedBucketOwner`` on a request,
S3 refuses it (403) unless the bucket belongs to that account. One botocore hook on the client adds it to every
operation that takes it (and ``ExpectedSourceBucketOwner`` to copies), so no call site can forget it; a value a
caller sets explicitly is kept.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ConfigurationError

_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
_OWNER_PARAMETERS = ("ExpectedBucketOwner", "ExpectedSourceBucketOwner")


def pin_bucket_owner(s3_client: Any, account_id: str) -> None:
    """Make every request of ``s3_client`` name ``account_id`` as the bucket owner (idempotent per client)."""
    if not _ACCOUNT_ID.match(account_id):
        raise ConfigurationError(f"The expected bucket owner must be a 12-digit AWS account id, not {account_id!r}.")

    def add_owner(params: dict[str, Any], model: Any, **_: Any) -> None:
        members = model.input_shape.members if model.input_shape is not None else {}
        for name in _OWNER_PARAMETERS:
            if name in members:
                params.setdefault(name, account_id)

    s3_client.meta.events.register("before-parameter-build.s3", add_owner, unique_id="omborigrid-bucket-owner")
