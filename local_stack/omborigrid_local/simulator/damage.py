"""Broken deliveries made from real ones: truncated parquet, empty files, corrupt members, zip bombs, bad zips.

Why derive them from a generated delivery rather than write them by hand: each broken file is then exactly
"the real file, with one thing wrong", so a client that lands it has missed that one thing. Each damage is
deterministic (no clock, no randomness) and cached next to the file it was made from.

ZIP offsets used here (APPNOTE.TXT 4.3.7 and 4.3.12): a local file header is 30 bytes plus name and extra
field, with CRC-32 at +14 and the uncompressed size at +22; a central directory entry is 46 bytes plus name,
extra and comment, with CRC-32 at +16 and the uncompressed size at +24; the end of central directory record
holds the directory's size at +12 and its offset at +16.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PARQUET_MAGIC = b"PAR1"
LIED_SIZE = 1024  # what a lying zip bomb declares as its inflated size
_EOCD = b"PK\x05\x06"
_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_ZIP64_MARK = 0xFFFFFFFF
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Damage:
    """One way to break a delivery.

    ``kind``/``variant``/``amount``: ``truncate`` (amount K bytes kept), ``zero_bytes``, ``bad_member``
    (variant ``crc`` | ``footer``, amount N, 1-based), ``zip_bomb`` (variant ``ratio`` | ``lie``, amount the true
    inflated size), ``bad_zip`` (variant ``garbage_directory`` | ``truncated``).
    """

    kind: str
    variant: str = ""
    amount: int = 0

    def key(self) -> str:
        return f"{self.kind}-{self.variant}-{self.amount}"


def apply(damage: Damage, source: Path, out: Path) -> None:
    """Write ``source`` with ``damage`` done to it to ``out``; ValueError if it cannot apply to that file."""
    if damage.kind == "truncate":
        _truncate(source, out, damage.amount)
    elif damage.kind == "zero_bytes":
        out.write_bytes(b"")
    elif damage.kind == "bad_member":
        _bad_member(source, out, damage.amount, fix_crc=damage.variant == "footer")
    elif damage.kind == "zip_bomb":
        _zip_bomb(source, out, damage.amount, lie=damage.variant == "lie")
    elif damage.kind == "bad_zip":
        _bad_zip(source, out, truncated=damage.variant == "truncated")
    else:
        raise ValueError(f"unknown damage {damage.kind!r}")


def _truncate(source: Path, out: Path, keep: int) -> None:
    """The first ``keep`` bytes plus ``PAR1``: both magics present, the footer gone. ``keep`` is clamped so the
    result is always shorter than the real file (whose last 8 bytes are the footer length and the magic)."""
    size = source.stat().st_size
    keep = max(len(PARQUET_MAGIC), min(keep, size - 12))
    with source.open("rb") as src, out.open("wb") as dst:
        dst.write(src.read(keep))
        dst.write(PARQUET_MAGIC)


def _directory(path: Path) -> tuple[int, int]:
    """(offset, size) of the central directory, from the end record of an archive without a comment."""
    with path.open("rb") as handle:
        handle.seek(-22, 2)
        record = handle.read(22)
    if record[:4] != _EOCD:
        raise ValueError(f"{path.name} has no plain end of central directory record")
    size, offset = struct.unpack_from("<II", record, 12)
    if _ZIP64_MARK in (size, offset):
        raise ValueError(f"{path.name} is a zip64 archive; damage works on archives below 4 GiB")
    return offset, size


def _central_entries(path: Path) -> list[int]:
    """File offsets of the central directory entries, in archive order."""
    offset, size = _directory(path)
    with path.open("rb") as handle:
        handle.seek(offset)
        directory = handle.read(size)
    entries, pos = [], 0
    while pos < len(directory):
        if directory[pos : pos + 4] != _CENTRAL:
            raise ValueError("central directory entry without its signature")
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", directory, pos + 28)
        entries.append(offset + pos)
        pos += 46 + name_len + extra_len + comment_len
    return entries


def _data_offset(handle: BinaryIO, header_offset: int) -> int:
    handle.seek(header_offset)
    header = handle.read(30)
    if header[:4] != _LOCAL:
        raise ValueError("local file header without its signature")
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    return header_offset + 30 + int(name_len) + int(extra_len)


def _bad_member(source: Path, out: Path, number: int, *, fix_crc: bool) -> None:
    """Member ``number`` broken in place: 16 stored bytes in its middle flipped (CRC left stale), or its parquet
    footer overwritten with 0xFF and the CRC recomputed in both headers (the zip is sound, the parquet is not)."""
    with zipfile.ZipFile(source) as archive:
        infos = archive.infolist()
    if number > len(infos):
        raise ValueError(f"archive_bad_member={number} but the archive has {len(infos)} members")
    info = infos[number - 1]
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError("archive_bad_member works on stored members")
    shutil.copyfile(source, out)
    with out.open("r+b") as handle:
        start = _data_offset(handle, info.header_offset)
        if not fix_crc:
            middle = start + info.compress_size // 2
            handle.seek(middle)
            flipped = bytes(b ^ 0xFF for b in handle.read(16))
            handle.seek(middle)
            handle.write(flipped)
            return
        end = start + info.compress_size
        handle.seek(end - 8)
        (footer_len,) = struct.unpack("<I", handle.read(4))
        handle.seek(end - 8 - footer_len)
        handle.write(b"\xff" * footer_len)
        handle.seek(start)
        crc, left = 0, info.compress_size
        while left:
            block = handle.read(min(_CHUNK, left))
            crc, left = zlib.crc32(block, crc), left - len(block)
        packed = struct.pack("<I", crc)
        handle.seek(info.header_offset + 14)
        handle.write(packed)
        handle.seek(_central_entries(out)[number - 1] + 16)
        handle.write(packed)


def _zip_bomb(source: Path, out: Path, inflated: int, *, lie: bool) -> None:
    """The real archive plus one deflated member of ``inflated`` zero bytes (ratio about 1000:1), named like the
    last events member's sibling; with ``lie`` both headers declare LIED_SIZE bytes (CRC of the true data)."""
    shutil.copyfile(source, out)
    with zipfile.ZipFile(out, "a") as archive:
        last = next(i for i in reversed(archive.infolist()) if i.filename.startswith("events/"))
        info = zipfile.ZipInfo(last.filename.replace("part-0", "part-1"), date_time=last.date_time)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = last.external_attr
        info.file_size = inflated
        zeros = bytes(_CHUNK)
        with archive.open(info, "w") as member:
            left = inflated
            while left:
                member.write(zeros[: min(_CHUNK, left)])
                left -= min(_CHUNK, left)
        bomb = archive.infolist()[-1]
    if not lie:
        return
    declared = struct.pack("<I", LIED_SIZE)
    with out.open("r+b") as handle:
        handle.seek(bomb.header_offset + 22)
        handle.write(declared)
        handle.seek(_central_entries(out)[-1] + 24)
        handle.write(declared)


def _bad_zip(source: Path, out: Path, *, truncated: bool) -> None:
    """The local entries intact (the file still starts with ``PK\\x03\\x04``) and the directory garbage:
    overwritten with hash output (the end record still points at it), or cut off with the end record."""
    offset, size = _directory(source)
    if truncated:
        with source.open("rb") as src, out.open("wb") as dst:
            _copy_prefix(src, dst, offset)
        return
    shutil.copyfile(source, out)
    with out.open("r+b") as handle:
        handle.seek(offset)
        handle.write(hashlib.shake_128(b"garbage central directory").digest(size))


def _copy_prefix(src: BinaryIO, dst: BinaryIO, count: int) -> None:
    while count:
        block = src.read(min(_CHUNK, count))
        if not block:
            raise ValueError("archive shorter than its directory offset")
        dst.write(block)
        count -= len(block)
