"""A part leaves for the wire in one piece: urllib3 is handed the part's bytes, not a file it would send in
16 KiB blocks (tests/integration/test_transfer_whole_part.py: a retry over HTTP sends the same bytes)."""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest

from omborigrid_export.transfer import MultipartUpload
from omborigrid_export.transfer.buffers import WholeBody

PART = 256 * 1024 + 7


class _Stop(Exception):
    pass


def test_given_an_upload_part_then_urllib3_is_handed_the_whole_part_not_a_file() -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    seen: list[tuple[bool, list[bytes], int, list[bytes], bool]] = []

    def capture(request: Any, **_: Any) -> None:
        body = request.body
        first = [bytes(piece) for piece in body] if isinstance(body, WholeBody) else []
        rewound = body.seek(0) if isinstance(body, WholeBody) else -1
        again = [bytes(piece) for piece in body] if isinstance(body, WholeBody) else []
        seen.append((isinstance(body, WholeBody), first, rewound, again, "Expect" in request.headers))
        raise _Stop()

    upload = MultipartUpload(s3, "bucket", "key", upload_id="u", job_id="j", size=PART, part_size=PART)
    s3.meta.events.register_last("before-send", capture)
    data = os.urandom(PART)
    with pytest.raises(_Stop):
        upload.upload_part(1, data, 0)
    assert seen == [(True, [data], 0, [data], False)]
