"""The small reads of a download, each one retried: the probe that picks the strategy, the first bytes (what
the file is), and one byte range (the tail for the format check and the content proof)."""

from __future__ import annotations

import logging

import requests

from ..errors import TransferFailed
from .multipart import MultipartUpload
from .retry import Retry, Truncated
from .source import DownloadSource, RangeIgnored

logger = logging.getLogger(__name__)


def probe(source: DownloadSource, upload: MultipartUpload, retry: Retry) -> tuple[bool, requests.Response | None]:
    """Find out whether the source serves ranges, by asking for the first missing part.

    Returns (ranged, response): a 206 for that part (its body becomes the part), or a 200 to stream. With no
    part missing: (True, None).
    """
    start, end = upload.first_missing_range()
    if start is None:
        return True, None

    def open_first() -> tuple[bool, requests.Response | None]:
        try:
            response = source.open(start, end)
        except RangeIgnored as ignored:
            if upload.parts:
                # Parts from an earlier invocation cannot be trusted to line up with a stream: start over.
                logger.warning("the source stopped honouring Range; restarting the upload from byte 0")
                upload.reset()
            return False, ignored.response
        try:
            source.check_content_range(response, start, end)
        except BaseException:
            response.close()
            raise
        return True, response

    return retry.call(open_first, what=lambda: f"Starting the download from {source.host}")


def read_head(source: DownloadSource, length: int, retry: Retry) -> bytes:
    """The first ``length`` bytes of the file (from a whole-file answer too, reading no more than needed)."""

    def read() -> bytes:
        try:
            response = source.open(0, length - 1)
        except RangeIgnored as ignored:
            response = ignored.response
        with response:
            data = b""
            for chunk in response.iter_content(length):
                data += chunk
                if len(data) >= length:
                    break
            return data[:length]

    return retry.call(read, what=lambda: f"Reading the start of the download from {source.host}")


def read_range(source: DownloadSource, start: int, end: int, retry: Retry) -> bytes:
    """Bytes start..end (inclusive) of the file, with a ranged GET."""

    def read() -> bytes:
        try:
            response = source.open(start, end)
        except RangeIgnored as ignored:
            ignored.response.close()
            raise TransferFailed(f"The download on {source.host} stopped honouring Range.") from None
        with response:
            source.check_content_range(response, start, end)
            data = response.content
        if len(data) != end - start + 1:
            raise Truncated()
        return data

    return retry.call(read, what=lambda: f"Reading bytes {start}-{end} from {source.host}")
