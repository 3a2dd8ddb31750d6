"""The parquet prover on real files: the simulator's deliveries and pyarrow-written files of each bad kind.

Each test reads a file the way the transfer does: the last 8 bytes, then ``tail_length`` trailing bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from omborigrid_export.errors import IntegrityError, InvalidInput
from omborigrid_export.models import ExportRequest, JobIdentity
from omborigrid_export.parquet_footer import decode_footer
from omborigrid_export.parquet_proof import (
    CHECK_EVENT_TIME,
    CHECK_FOOTER,
    CHECK_ROW_GROUPS,
    CHECK_TENANT,
    ParquetProver,
    ProofPolicy,
)
from omborigrid_export.proof import CheckResult, ContentProver, Proof
from omborigrid_local.simulator.data import DeliverySpec, generate

TENANT = "621e1fc633350f0007637a0c"
OTHER_TENANT = "5f0c0ffee0ddba11deadbeef"
DAY = dt.date(2024, 4, 12)
PASSED, NOT_VERIFIED = CheckResult.PASSED, CheckResult.NOT_VERIFIED


def identity(tenant: str = TENANT, first: dt.date = DAY, last: dt.date = DAY) -> JobIdentity:
    return JobIdentity("job-4711", ExportRequest(tenant, first, last))


def prove(data: bytes, prover: ContentProver | None = None) -> Proof:
    """What the transfer does: size and last 8 bytes, then exactly the tail the prover asks for."""
    prover = prover or ParquetProver(identity())
    length = prover.tail_length(len(data), data[-8:])
    assert 8 < length <= len(data)
    return prover.prove(data[-length:], len(data))


def parquet_bytes(table: pa.Table, **options: Any) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return bytes(sink.getvalue().to_pybytes())


def events(
    rows: int = 500,
    *,
    tenants: tuple[str, ...] = (TENANT,),
    start: dt.datetime = dt.datetime(2024, 4, 12, tzinfo=dt.UTC),
    span: dt.timedelta = dt.timedelta(hours=23, minutes=59),
    time_type: pa.DataType | None = None,
) -> pa.Table:
    moments = [start + span * i / max(1, rows - 1) for i in range(rows)]
    return pa.table(
        {
            "id": [f"event-{i}" for i in range(rows)],
            "tenantId": [tenants[i % len(tenants)] for i in range(rows)],
            "eventType": ["CONTENT_VIEW"] * rows,
            "eventTime": pa.array(moments, time_type or pa.timestamp("us", tz="UTC")),
        }
    )


# -- files that are what was asked for ----------------------------------------------------------------------------
@pytest.mark.parametrize("timestamp_format", ["timestamp", "string"])
def test_a_simulator_day_of_events_is_proven(tmp_path: Path, timestamp_format: str) -> None:
    path = tmp_path / "events.parquet"
    rows = generate(
        DeliverySpec(TENANT, "2024-04-12", "2024-04-12", rows_per_day=3000, timestamp_format=timestamp_format), path
    )
    data = path.read_bytes()

    proof = prove(data)

    assert proof.checks == {
        CHECK_FOOTER: PASSED,
        CHECK_ROW_GROUPS: PASSED,
        CHECK_TENANT: PASSED,
        CHECK_EVENT_TIME: PASSED,
    }
    assert proof.rows == rows["events"] == pq.read_metadata(path).num_rows
    assert proof.row_groups == pq.read_metadata(path).num_row_groups
    assert proof.tenant_ids == (TENANT,)
    assert proof.created_by == pq.read_metadata(path).created_by
    assert proof.event_time_min is not None
    assert proof.event_time_max is not None
    times = pq.read_table(path, columns=["eventTime"]).column(0).to_pylist()
    if timestamp_format == "timestamp":
        assert (proof.event_time_min, proof.event_time_max) == (min(times), max(times))
    else:  # strings of 7 fractional digits: the proof keeps microseconds
        assert proof.event_time_min.isoformat(timespec="microseconds")[:26] == min(times)[:26]
    assert DAY <= proof.event_time_min.date() <= proof.event_time_max.date() == DAY
    assert [c.path for c in proof.columns][:4] == ["id", "tenantId", "sessionId", "clientId"]
    assert proof.schema_fingerprint.startswith("sha256:")
    assert json.loads(json.dumps(proof.to_dict()))["checks"]["tenant"] == "passed"


def test_every_member_of_a_simulator_zip_is_proven_by_its_own_time_column(tmp_path: Path) -> None:
    path = tmp_path / "delivery.zip"
    generate(DeliverySpec(TENANT, "2024-04-11", "2024-04-12", delivery="zip", rows_per_day=800), path)
    prover = ParquetProver(identity(first=dt.date(2024, 4, 11)))
    fingerprints: dict[str, set[str]] = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            proof = prove(archive.read(name), prover)
            assert set(proof.checks.values()) == {PASSED}, name
            fingerprints.setdefault(name.split("/")[0], set()).add(proof.schema_fingerprint)
    # events, sessions and clients: one schema each, the same on both days
    assert {k: len(v) for k, v in fingerprints.items()} == {"events": 1, "sessions": 1, "clients": 1}
    assert len(set().union(*fingerprints.values())) == 3


@pytest.mark.parametrize(
    "time_type",
    [pa.timestamp("ms", tz="UTC"), pa.timestamp("ns"), pa.timestamp("us", tz="Asia/Dubai"), pa.date32()],
    ids=str,
)
def test_event_times_of_every_stored_kind_are_read(time_type: pa.DataType) -> None:
    table = events(time_type=time_type, start=dt.datetime(2024, 4, 12, 0, 0, 1, tzinfo=dt.UTC))
    proof = prove(parquet_bytes(table))
    assert proof.checks[CHECK_EVENT_TIME] is PASSED
    assert proof.event_time_min is not None
    assert proof.event_time_min.date() == DAY


def test_legacy_int96_event_times_are_read() -> None:
    table = events(time_type=pa.timestamp("ns"))
    proof = prove(parquet_bytes(table, use_deprecated_int96_timestamps=True, write_statistics=True))
    # pyarrow writes no statistics for INT96: nothing to read, so not verified (and the rest still proven)
    assert proof.checks[CHECK_EVENT_TIME] is NOT_VERIFIED
    assert proof.checks[CHECK_TENANT] is PASSED


def test_times_within_the_tolerance_pass_and_just_beyond_it_fail() -> None:
    # A local-day file from UTC+14 starts 14 hours before the UTC day; one from UTC-12 ends 12 hours after.
    early = events(start=dt.datetime(2024, 4, 11, 10, tzinfo=dt.UTC), span=dt.timedelta(hours=36))
    assert prove(parquet_bytes(early)).checks[CHECK_EVENT_TIME] is PASSED
    last_allowed = dt.datetime(2024, 4, 14, tzinfo=dt.UTC) - dt.timedelta(microseconds=1)
    late = events(start=last_allowed - dt.timedelta(hours=1), span=dt.timedelta(hours=1))
    assert prove(parquet_bytes(late)).checks[CHECK_EVENT_TIME] is PASSED
    beyond = events(start=last_allowed - dt.timedelta(hours=1), span=dt.timedelta(hours=1, microseconds=1))
    with pytest.raises(IntegrityError, match="to 2024-04-14T00:00:00Z"):
        prove(parquet_bytes(beyond))
    exact = ParquetProver(identity(), ProofPolicy(tolerance=dt.timedelta(0)))
    with pytest.raises(IntegrityError, match="give or take 0 seconds"):
        prove(parquet_bytes(early), exact)


def test_the_first_present_time_column_is_the_event_time() -> None:
    table = events().rename_columns(["sessionId", "tenantId", "environment", "sessionCreated"])
    table = table.append_column("clientCreated", pa.array([dt.datetime(2000, 1, 1)] * table.num_rows))
    proof = prove(parquet_bytes(table))
    assert proof.checks[CHECK_EVENT_TIME] is PASSED  # sessionCreated (inside), not clientCreated (2000)
    policy = ProofPolicy(event_time_columns=("clientCreated", "sessionCreated"))
    with pytest.raises(IntegrityError, match="clientCreated values from 2000-01-01T00:00:00Z"):
        prove(parquet_bytes(table), ParquetProver(identity(), policy))


def test_the_last_day_of_the_calendar_is_a_day_like_any_other() -> None:
    table = events(start=dt.datetime(9999, 12, 31, tzinfo=dt.UTC), span=dt.timedelta(hours=23))
    prover = ParquetProver(identity(first=dt.date.max, last=dt.date.max))
    assert prove(parquet_bytes(table), prover).checks[CHECK_EVENT_TIME] is PASSED
    with pytest.raises(IntegrityError, match="outside the requested days 9999-12-31"):
        prove(parquet_bytes(events()), prover)


def test_a_range_of_days_allows_every_day_of_it() -> None:
    table = events(start=dt.datetime(2024, 4, 10, tzinfo=dt.UTC), span=dt.timedelta(days=3, hours=23))
    prover = ParquetProver(identity(first=dt.date(2024, 4, 10), last=dt.date(2024, 4, 13)))
    assert prove(parquet_bytes(table), prover).checks[CHECK_EVENT_TIME] is PASSED


# -- files that are not what was asked for --------------------------------------------------------------------------
def test_another_tenants_data_is_refused_naming_that_tenant() -> None:
    with pytest.raises(IntegrityError, match=f"holds data of tenant '{OTHER_TENANT}'.*not only of tenant {TENANT}"):
        prove(parquet_bytes(events(tenants=(OTHER_TENANT,))))


def test_a_file_mixing_tenants_is_refused_naming_both() -> None:
    data = parquet_bytes(events(tenants=(TENANT, OTHER_TENANT)), row_group_size=100)
    with pytest.raises(IntegrityError, match=f"tenants '{OTHER_TENANT}' to '{TENANT}'"):
        prove(data)


def test_another_tenant_in_a_later_row_group_is_found() -> None:
    table = pa.concat_tables([events(400), events(100, tenants=(OTHER_TENANT,))])
    with pytest.raises(IntegrityError, match="tenants"):
        prove(parquet_bytes(table, row_group_size=100))


def test_data_from_other_dates_is_refused_naming_its_range() -> None:
    table = events(start=dt.datetime(2024, 3, 1, 8, tzinfo=dt.UTC), span=dt.timedelta(hours=2))
    with pytest.raises(
        IntegrityError,
        match=r"holds eventTime values from 2024-03-01T08:00:00Z to 2024-03-01T10:00:00Z, outside the requested days 2024-04-12\.\.2024-04-12",
    ):
        prove(parquet_bytes(table))


@pytest.mark.parametrize("keep", [1024, 4096, 8192, "half"])
def test_a_truncated_file_with_the_magic_glued_on_is_refused(keep: int | str) -> None:
    # Given the first few KB of a real file and PAR1 (what a truncated upload with a sloppy writer looks like)
    real = parquet_bytes(events(5000), row_group_size=1000)
    cut = len(real) // 2 if keep == "half" else int(keep)
    assert cut < len(real) - 1000
    with pytest.raises(IntegrityError):
        prove(real[:cut] + b"PAR1")


def test_a_real_footer_on_too_little_data_is_refused_as_truncated() -> None:
    real = parquet_bytes(events(5000), row_group_size=1000)
    footer_and_trailer = real[-(int.from_bytes(real[-8:-4], "little") + 8) :]
    with pytest.raises(IntegrityError, match=r"outside the file's data .* truncated"):
        prove(real[:3000] + footer_and_trailer)


def encrypted(*, plaintext_footer: bool) -> bytes:
    import pyarrow.parquet.encryption as pe

    class InMemoryKms(pe.KmsClient):  # type: ignore[misc]
        def __init__(self, _config: object) -> None:
            super().__init__()

        def wrap_key(self, key: bytes, _master_key_identifier: str) -> bytes:
            return base64.b64encode(key)

        def unwrap_key(self, wrapped: bytes, _master_key_identifier: str) -> bytes:
            return base64.b64decode(wrapped)

    config = pe.EncryptionConfiguration(
        footer_key="footer",
        column_keys={"column": ["eventTime"]},
        plaintext_footer=plaintext_footer,
        double_wrapping=False,
    )
    properties = pe.CryptoFactory(InMemoryKms).file_encryption_properties(pe.KmsConnectionConfig(), config)
    return parquet_bytes(events(10), encryption_properties=properties)


def test_an_encrypted_footer_cannot_be_verified() -> None:
    data = encrypted(plaintext_footer=False)
    assert data[-4:] == b"PARE"
    with pytest.raises(IntegrityError, match=r"encrypted footer \(it ends in PARE\): its content cannot be verified"):
        prove(data)


def test_encrypted_columns_under_a_plaintext_footer_cannot_be_verified() -> None:
    data = encrypted(plaintext_footer=True)
    assert data[-4:] == b"PAR1"
    with pytest.raises(IntegrityError, match="cannot be verified"):
        prove(data)


@pytest.mark.parametrize("data", [b"", b"PAR1", b"PAR1PAR1", b"PK\x03\x04" + b"\x00" * 100])
def test_an_empty_or_non_parquet_file_is_refused(data: bytes) -> None:
    with pytest.raises(IntegrityError, match=r"too short|does not end in the parquet magic"):
        ParquetProver(identity()).tail_length(len(data), data[-8:])


def test_a_tail_of_the_wrong_length_is_refused() -> None:
    data = parquet_bytes(events(10))
    prover = ParquetProver(identity())
    length = prover.tail_length(len(data), data[-8:])
    with pytest.raises(IntegrityError, match="trailing bytes were given"):
        prover.prove(data[-(length + 1) :], len(data))


def test_a_footer_over_the_cap_is_refused_before_it_is_read() -> None:
    data = parquet_bytes(events(10))
    small = ParquetProver(identity(), ProofPolicy(max_footer_bytes=100))
    with pytest.raises(IntegrityError, match="more than the 100 bytes allowed"):
        small.tail_length(len(data), data[-8:])


# -- files that prove nothing either way -------------------------------------------------------------------------
def test_a_file_of_no_rows_is_valid_and_its_content_checks_are_not_verified() -> None:
    data = parquet_bytes(events(0))
    for policy in (ProofPolicy(), ProofPolicy(strict=True)):
        proof = prove(data, ParquetProver(identity(), policy))
        assert proof.rows == 0
        assert proof.checks == {
            CHECK_FOOTER: PASSED,
            CHECK_ROW_GROUPS: PASSED,
            CHECK_TENANT: NOT_VERIFIED,
            CHECK_EVENT_TIME: NOT_VERIFIED,
        }
        assert (proof.tenant_ids, proof.event_time_min, proof.event_time_max) == ((), None, None)


def test_absent_statistics_pass_as_not_verified_and_fail_when_strict() -> None:
    data = parquet_bytes(events(), write_statistics=False)
    proof = prove(data)
    assert (proof.checks[CHECK_TENANT], proof.checks[CHECK_EVENT_TIME]) == (NOT_VERIFIED, NOT_VERIFIED)
    assert proof.rows == 500
    strict = ParquetProver(identity(), ProofPolicy(strict=True))
    with pytest.raises(IntegrityError, match=r"strict policy .*tenant: its tenantId column has no usable statistics"):
        prove(data, strict)


def test_statistics_on_one_column_only_verify_that_column() -> None:
    proof = prove(parquet_bytes(events(), write_statistics=["tenantId"]))
    assert (proof.checks[CHECK_TENANT], proof.checks[CHECK_EVENT_TIME]) == (PASSED, NOT_VERIFIED)


def test_a_file_without_the_columns_is_not_verified() -> None:
    table = pa.table({"x": [1, 2, 3]})
    proof = prove(parquet_bytes(table))
    assert (proof.checks[CHECK_TENANT], proof.checks[CHECK_EVENT_TIME]) == (NOT_VERIFIED, NOT_VERIFIED)
    with pytest.raises(IntegrityError, match=r"no tenantId column.*none of the columns eventTime, sessionCreated"):
        prove(parquet_bytes(table), ParquetProver(identity(), ProofPolicy(strict=True)))


def test_a_tenant_column_that_cannot_hold_the_tenant_or_times_that_are_not_times_are_not_verified() -> None:
    table = pa.table({"tenantId": [1, 2], "eventTime": ["yesterday", "today"]})
    proof = prove(parquet_bytes(table))
    assert (proof.checks[CHECK_TENANT], proof.checks[CHECK_EVENT_TIME]) == (NOT_VERIFIED, NOT_VERIFIED)


def test_a_tenant_column_of_only_nulls_is_not_verified() -> None:
    table = events().set_column(1, "tenantId", pa.array([None] * 500, pa.string()))
    assert prove(parquet_bytes(table)).checks[CHECK_TENANT] is NOT_VERIFIED


def test_the_decoded_footer_is_what_the_proof_reports() -> None:
    data = parquet_bytes(events(1000), row_group_size=64)
    proof = prove(data)
    length = ParquetProver(identity()).tail_length(len(data), data[-8:])
    metadata = decode_footer(data[-length:], len(data), max_footer_bytes=ProofPolicy().max_footer_bytes)
    assert (proof.rows, proof.row_groups) == (1000, 16)
    assert proof.columns == metadata.columns
    assert proof.schema_fingerprint == metadata.schema_fingerprint


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tenant_column": ""}, "tenant column name"),
        ({"event_time_columns": ()}, "event-time column name"),
        ({"tolerance": dt.timedelta(seconds=-1)}, "must not be negative"),
        ({"max_footer_bytes": 0}, "footer cap"),
        ({"max_footer_bytes": 2**32}, "footer cap"),
    ],
)
def test_a_policy_that_cannot_work_is_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ProofPolicy(**options)
