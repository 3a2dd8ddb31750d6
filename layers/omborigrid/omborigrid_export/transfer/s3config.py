"""The S3 client setting the transfer is cheapest with: no SHA-256 of the part bodies over TLS.

Every part carries its own CRC32 (``x-amz-checksum-crc32``, verified by S3, combined into the full-object
CRC32 that the completion checks), so botocore adds no request checksum of its own: it skips one when a
checksum header is already given. It does, however, still hash the whole body with SHA-256 for the SigV4
signature: its S3 signer sends ``UNSIGNED-PAYLOAD`` over https only when the checksum header is one it
resolved itself, so a caller-supplied checksum makes it read and hash each part once more (about 0.6 CPU-s per
GiB, a sixth of the transfer's CPU; see BENCHMARKS.md). Over TLS the signed headers (the CRC32 among them)
and TLS's own integrity cover the body, which is what botocore relies on for its own checksums; over plain
HTTP (a local emulator) the payload stays signed.
"""

from __future__ import annotations

from botocore.config import Config


def transfer_s3_config(endpoint_url: str | None = None) -> Config:
    """Settings to merge into the S3 client the transfer is given (``Config(...).merge(...)``).

    ``endpoint_url`` is the client's custom endpoint, if any (AWS's own endpoints are https).
    """
    if endpoint_url is not None and not endpoint_url.lower().startswith("https://"):
        return Config()
    return Config(s3={"payload_signing_enabled": False})
