"""The pure parts of the transfer: part sizing, format detection by bytes, the resumable checkpoint, retries."""

from __future__ import annotations

import ast
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3

from omborigrid_export import transfer
from omborigrid_export.errors import IntegrityError, InvalidInput, TransferFailed
from omborigrid_export.proof import Proof
from omborigrid_export.transfer import (
    MAX_OBJECT_SIZE,
    MAX_PARTS,
    TAIL_BYTES,
    Checkpoint,
    ContentKind,
    Continued,
    Landed,
    LandedObject,
    TransferOutcome,
    choose_part_size,
)
from omborigrid_export.transfer.buffers import RollingTail
from omborigrid_export.transfer.proving import prove_from_stream_tail, prove_with_ranges
from omborigrid_export.transfer.retry import CONTINUING, STARTING, Retry, Truncated

MIB = 1024 * 1024
GIB = 1024 * MIB
TIB = 1024 * GIB
MIN_PART = 16 * MIB


# --- choose_part_size ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, MIB, MIN_PART, 10 * GIB])
def test_given_small_or_moderate_file_when_part_size_chosen_then_minimum(size: int) -> None:
    assert choose_part_size(size, MIN_PART) == MIN_PART


@pytest.mark.parametrize("size", [100 * GIB, 1 * TIB, 3 * TIB + 12345, MAX_OBJECT_SIZE])
@pytest.mark.parametrize("minimum", [5 * MIB, MIN_PART])
def test_given_large_file_when_part_size_chosen_then_fits_in_ten_thousand_whole_mib_parts(
    size: int, minimum: int
) -> None:
    part = choose_part_size(size, minimum)

    assert part >= minimum
    assert part % MIB == 0
    assert math.ceil(size / part) <= MAX_PARTS
    # Not wastefully large: one MiB less would either break the minimum or the part limit.
    assert part - MIB < minimum or math.ceil(size / (part - MIB)) > MAX_PARTS


def test_given_hundred_gib_when_part_size_chosen_then_eleven_mib() -> None:
    # 100 GiB / 10,000 = 10.24 MiB -> 11 MiB (with a 5 MiB minimum).
    assert choose_part_size(100 * GIB, 5 * MIB) == 11 * MIB
    assert math.ceil(100 * GIB / (11 * MIB)) == 9310


def test_given_five_tib_when_part_size_chosen_then_at_most_ten_thousand_parts() -> None:
    part = choose_part_size(5 * TIB, 5 * MIB)
    assert part == 525 * MIB
    assert math.ceil(5 * TIB / part) <= MAX_PARTS


def test_given_minimum_not_whole_mib_when_part_size_chosen_then_rounded_up_to_mib() -> None:
    assert choose_part_size(10, 5 * MIB + 1) == 6 * MIB


@pytest.mark.parametrize("size", [MAX_OBJECT_SIZE + 1, 6 * TIB])
def test_given_more_than_five_tib_when_part_size_chosen_then_integrity_error(size: int) -> None:
    with pytest.raises(IntegrityError, match="5 TiB"):
        choose_part_size(size, MIN_PART)


# --- ContentKind.detect --------------------------------------------------------------------------------


def zip_bytes(comment: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("analytics.parquet", b"PAR1" + b"\0" * 100 + b"PAR1")
        archive.comment = comment
    return buffer.getvalue()


def test_given_parquet_magic_at_both_ends_when_detected_then_parquet() -> None:
    assert ContentKind.detect(b"PAR1\x15\x04", b"\x00\x00PAR1") == "parquet"


@pytest.mark.parametrize(("head", "tail"), [(b"PAR1xx", b"xxxx"), (b"xxxx", b"PAR1"), (b"PAR", b"PAR1"), (b"", b"")])
def test_given_parquet_magic_at_one_end_only_when_detected_then_none(head: bytes, tail: bytes) -> None:
    assert ContentKind.detect(head, tail) is None


def test_given_real_zip_when_detected_then_zip() -> None:
    data = zip_bytes()
    assert ContentKind.detect(data[:4096], data[-TAIL_BYTES:]) == "zip"


def test_given_zip_with_long_comment_when_tail_covers_it_then_zip() -> None:
    # The end-of-central-directory record sits before the comment, up to 64 KiB from the end.
    data = zip_bytes(comment=b"c" * 65_535)
    assert ContentKind.detect(data[:4096], data[-TAIL_BYTES:]) == "zip"


def test_given_zip_header_without_end_record_in_tail_when_detected_then_none() -> None:
    data = zip_bytes()
    truncated = data[: data.rfind(b"PK\x05\x06")]
    assert ContentKind.detect(truncated[:4096], truncated[-TAIL_BYTES:]) is None


def test_given_end_record_without_zip_header_when_detected_then_none() -> None:
    assert ContentKind.detect(b"GARBAGE!", b"...PK\x05\x06" + b"\0" * 18) is None


@pytest.mark.parametrize(
    ("head", "tail"),
    [(b"<html>", b"</html>"), (b"\x1f\x8b\x08\x00", b"\0\0\0\0"), (b"PK\x05\x06", b"PK\x05\x06"), (b"par1", b"par1")],
)
def test_given_other_bytes_when_detected_then_none(head: bytes, tail: bytes) -> None:
    assert ContentKind.detect(head, tail) is None


def test_given_zip_named_parquet_that_even_ends_in_par1_when_detected_then_zip_by_bytes() -> None:
    # ContentKind.detect never sees the file name: a zip delivered as "x.parquet" (holding a parquet member, and
    # here with "PAR1" as its last bytes) is still a zip, because it does not start with the parquet magic.
    data = zip_bytes(comment=b"PAR1")
    assert data.endswith(b"PAR1")
    assert ContentKind.detect(data[:4096], data[-TAIL_BYTES:]) == "zip"


# --- Checkpoint ---------------------------------------------------------------------------------


def checkpoint(**overrides: Any) -> Checkpoint:
    values: dict[str, Any] = {
        "job_id": "job-1",
        "bucket": "lake",
        "key": "p/tenant=t/dt=2026-01-01/f.parquet",
        "upload_id": "upload-xyz",
        "size": 40 * MIB + 5,
        "part_size": 16 * MIB,
        "part_crcs": {1: 0xCBF43926, 3: 0xFFFFFFFF},
        "head": b"PAR1\x15\x04",
    }
    values.update(overrides)
    return Checkpoint(**values)


def test_given_checkpoint_when_to_dict_then_json_safe_with_bytes_done() -> None:
    data = json.loads(json.dumps(checkpoint().to_dict()))
    # Part 1 is whole (16 MiB); part 3 is the last one (8 MiB + 5 bytes).
    assert data["bytesDone"] == 16 * MIB + 8 * MIB + 5
    assert data["uploadId"] == "upload-xyz"
    assert "parts" not in data  # compact: (number, CRC) pairs only


def test_given_checkpoint_when_round_tripped_through_json_then_equal() -> None:
    original = checkpoint()
    assert Checkpoint.from_dict(json.loads(json.dumps(original.to_dict()))) == original
    assert original.part_numbers == [1, 3]


def test_given_ten_thousand_parts_then_the_checkpoint_fits_a_step_functions_payload() -> None:
    big = checkpoint(size=10_000 * 5 * MIB, part_size=5 * MIB, part_crcs={n: n * 7919 for n in range(1, 10_001)})
    encoded = json.dumps(big.to_dict())
    assert len(encoded) < 100 * 1024
    assert Checkpoint.from_dict(json.loads(encoded)) == big


def test_given_empty_checkpoint_when_round_tripped_then_equal() -> None:
    original = checkpoint(part_crcs={}, head=b"")
    assert Checkpoint.from_dict(original.to_dict()) == original
    assert original.bytes_done == 0


@pytest.mark.parametrize("field", ["jobId", "bucket", "key", "uploadId", "size", "partSize", "partCrcs"])
def test_given_missing_field_when_from_dict_then_invalid_input(field: str) -> None:
    data = checkpoint().to_dict()
    del data[field]
    with pytest.raises(InvalidInput, match="checkpoint"):
        Checkpoint.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "lots"),
        ("size", None),
        ("size", 0),
        ("partSize", [1]),
        ("partCrcs", "not base64!"),
        ("partCrcs", "AAAA"),  # 3 bytes: not a whole (number, crc) pair
        ("partCrcs", "AAAAAAAA"),  # part number 0
        ("head", "not base64!"),
    ],
)
def test_given_malformed_field_when_from_dict_then_invalid_input(field: str, value: object) -> None:
    data = checkpoint().to_dict()
    data[field] = value
    with pytest.raises(InvalidInput, match="checkpoint"):
        Checkpoint.from_dict(data)


def test_given_not_a_dict_when_from_dict_then_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="not an object"):
        Checkpoint.from_dict(["a", "list"])


# --- Retry: one set of transient errors, one loop ------------------------------------------------


class Flaky:
    """Raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def retry_with(attempts: int, slept: list[float]) -> Retry:
    return Retry(attempts=attempts, backoff=CONTINUING, sleep=slept.append)


@pytest.mark.parametrize(
    "error",
    [
        OSError("socket closed"),
        ConnectionResetError(104, "reset by peer"),
        requests.ConnectionError("refused"),
        requests.exceptions.ChunkedEncodingError("broken chunk"),
        urllib3.exceptions.ProtocolError("connection broken"),
        urllib3.exceptions.ReadTimeoutError(None, "/download", "read timed out"),  # type: ignore[arg-type]
        Truncated(),
    ],
)
def test_given_a_transient_error_when_retried_then_the_next_attempt_runs_after_a_backoff(error: Exception) -> None:
    # Every reader of the source (probe, peek, parts, stream, tail) retries exactly this set: before, the
    # probe let a raw OSError through that the part reader retried.
    slept: list[float] = []
    flaky = Flaky(error, error)
    assert retry_with(5, slept).call(flaky, what=lambda: "Reading") == "done"
    assert flaky.calls == 3
    assert slept == [0.4, 0.8]


@pytest.mark.parametrize("error", [IntegrityError("size lies"), ValueError("bug"), KeyError("x")])
def test_given_a_non_transient_error_when_retried_then_it_is_raised_at_once(error: Exception) -> None:
    slept: list[float] = []
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        retry_with(5, slept).call(flaky, what=lambda: "Reading")
    assert (flaky.calls, slept) == (1, [])


def test_given_only_failures_when_attempts_run_out_then_transfer_failed_names_what_and_how_often() -> None:
    slept: list[float] = []
    flaky = Flaky(*[Truncated()] * 10)
    with pytest.raises(TransferFailed, match=r"^Part 7 from host failed 4 times \(Truncated: the response ended"):
        retry_with(4, slept).call(flaky, what=lambda: "Part 7 from host")
    assert flaky.calls == 4
    assert slept == [0.4, 0.8, 1.6]


def test_backoffs_double_and_are_capped() -> None:
    assert [STARTING.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert [CONTINUING.delay(n) for n in range(1, 7)] == [0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


# --- RollingTail and the content proof from a tail ------------------------------------------------


def test_given_a_stream_when_its_tail_is_kept_then_at_most_one_chunk_more_than_asked_is_held() -> None:
    tail = RollingTail(keep=10)
    stream = bytes(range(100))
    for i in range(0, 100, 7):
        tail.append(stream[i : i + 7])
        assert len(tail) < 10 + 7
    assert len(tail) >= 10
    assert tail.last(10) == stream[-10:]
    assert tail.last(0) == b""
    with pytest.raises(ValueError, match="only the last"):
        tail.last(len(tail) + 1)
    tail.clear()
    assert len(tail) == 0


def test_given_no_tail_wanted_then_nothing_is_held() -> None:
    tail = RollingTail(keep=0)
    tail.append(b"x" * 1000)
    assert len(tail) == 0


class FooterLengthProver:
    """Reads the parquet footer length from the last 8 bytes; the proof records the tail it was given."""

    max_tail_bytes = 16 * MIB

    def __init__(self) -> None:
        self.tails: list[bytes] = []

    def tail_length(self, size: int, last8: bytes) -> int:
        if last8[-4:] != b"PAR1":
            raise IntegrityError("The file does not end like a parquet file.")
        return int.from_bytes(last8[:4], "little") + 8

    def prove(self, tail: bytes, size: int) -> Proof:
        self.tails.append(tail)
        return Proof(
            rows=len(tail),
            row_groups=1,
            schema_fingerprint="sha256:" + "0" * 64,
            columns=(),
            created_by=None,
            event_time_min=None,
            event_time_max=None,
            tenant_ids=(),
        )


def parquet_like(footer: bytes, body: int = 1000) -> bytes:
    return b"PAR1" + b"\x01" * body + footer + len(footer).to_bytes(4, "little") + b"PAR1"


def test_given_ranges_then_the_prover_gets_exactly_the_footer_it_asked_for() -> None:
    data = parquet_like(b"F" * 50)
    reads: list[tuple[int, int]] = []

    def read_range(start: int, end: int) -> bytes:
        reads.append((start, end))
        return data[start : end + 1]

    prover = FooterLengthProver()
    proof = prove_with_ranges(prover, len(data), read_range)
    assert prover.tails == [data[-58:]]
    assert proof.rows == 58
    assert reads == [(len(data) - 8, len(data) - 1), (len(data) - 58, len(data) - 1)]


def test_given_a_stream_tail_shorter_than_the_footer_then_it_cannot_be_verified() -> None:
    data = parquet_like(b"F" * 500)
    tail = RollingTail(keep=100)
    for i in range(0, len(data), 64):
        tail.append(data[i : i + 64])
    with pytest.raises(IntegrityError, match="last 508 bytes, more than the 100 bytes kept"):
        prove_from_stream_tail(FooterLengthProver(), len(data), tail)


def test_given_a_stream_tail_holding_the_footer_then_it_is_proven_from_memory() -> None:
    data = parquet_like(b"F" * 50)
    tail = RollingTail(keep=100)
    for i in range(0, len(data), 64):
        tail.append(data[i : i + 64])
    prover = FooterLengthProver()
    prove_from_stream_tail(prover, len(data), tail)
    assert prover.tails == [data[-58:]]


@pytest.mark.parametrize("footer_length", [-8, 10_000])
def test_given_a_prover_asking_for_an_impossible_tail_then_integrity_error(footer_length: int) -> None:
    data = b"PAR1" + b"\x01" * 100 + (footer_length & 0xFFFFFFFF).to_bytes(4, "little") + b"PAR1"
    with pytest.raises(IntegrityError, match="asked for the last"):
        prove_with_ranges(FooterLengthProver(), len(data), lambda start, end: data[start : end + 1])


# --- The package's shape -------------------------------------------------------------------------

PACKAGE = Path(transfer.__file__).parent
ENGINE = {"manager", "ranged", "streamed", "multipart", "source", "reads", "retry", "buffers", "proving", "context"}


def imports_of(module: str) -> list[ast.ImportFrom]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    return [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]


@pytest.mark.parametrize("module", ["checkpoint", "results", "content", "limits"])
def test_the_wire_format_and_result_modules_import_nothing_of_the_engine(module: str) -> None:
    # state.py, manifest.py and the ledger read checkpoints and results without loading the engine's code.
    siblings = {node.module for node in imports_of(module) if node.level == 1}
    assert siblings <= {"checkpoint", "limits", "content"}
    assert not siblings & ENGINE


@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE.glob("*.py")))
def test_no_module_of_the_package_imports_a_private_name(module: str) -> None:
    private = [alias.name for node in imports_of(module) for alias in node.names if alias.name.startswith("_")]
    assert private == []


def test_an_outcome_is_exactly_one_of_landed_and_continued() -> None:
    landed_object = LandedObject(
        bucket="b",
        key="k",
        bytes=1,
        checksum_crc32="AAAAAA==",
        content_kind=ContentKind.PARQUET,
        job_id="j",
        already_existed=False,
        source_host="h",
    )
    landed, continued = Landed(landed_object), Continued(checkpoint())
    assert (landed.object, landed.proof) == (landed_object, None)
    assert continued.checkpoint == checkpoint()
    assert isinstance(landed, TransferOutcome)
    assert not isinstance(continued, Landed)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"PAR1\x15\x04", ContentKind.PARQUET),
        (b"PK\x03\x04\x14\x00", ContentKind.ZIP),
        (b"PK\x05\x06", None),
        (b"<html>", None),
        (b"PAR", None),
        (b"", None),
    ],
)
def test_given_first_bytes_when_the_kind_they_announce_is_asked_then_only_the_magic_decides(
    head: bytes, kind: ContentKind | None
) -> None:
    assert ContentKind.from_head(head) is kind
