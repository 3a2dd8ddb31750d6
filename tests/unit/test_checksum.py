"""checksum.py: a full-object CRC32 combined from per-part CRC32s must equal zlib's CRC of the whole."""

from __future__ import annotations

import random
import zlib

import pytest

from omborigrid_export.checksum import (
    combine_parts,
    crc32_combine,
    crc32_of,
    from_base64,
    shift_operator,
    to_base64,
)


def random_parts(rng: random.Random) -> list[bytes]:
    """A random layout: zero-length, one-byte, small and larger parts in random order."""
    sizes = [0, 1, 1, 0, rng.randint(2, 64), rng.randint(65, 5000), rng.randint(0, 3)]
    sizes += [rng.choice([0, 1, 7, 4096, rng.randint(0, 20_000)]) for _ in range(rng.randint(0, 8))]
    rng.shuffle(sizes)
    return [rng.randbytes(n) for n in sizes]


def test_given_known_vector_when_crc32_of_then_standard_value() -> None:
    # The CRC-32 (IEEE) check value.
    assert crc32_of(b"123456789") == 0xCBF43926
    assert crc32_of(memoryview(b"123456789")) == 0xCBF43926
    assert crc32_of(b"") == 0


@pytest.mark.parametrize("seed", range(5))
def test_given_data_in_steps_when_crc32_of_runs_on_then_equals_zlib_of_the_whole(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(rng.randrange(1, 300_000))
    cuts = sorted(rng.sample(range(len(data) + 1), k=min(4, len(data) + 1)))
    running = 0
    for lo, hi in zip([0, *cuts], [*cuts, len(data)], strict=True):
        running = crc32_of(memoryview(data)[lo:hi], running)
    assert running == zlib.crc32(data)


def test_given_no_parts_when_combined_then_crc_of_empty() -> None:
    assert combine_parts([]) == zlib.crc32(b"") == 0


def test_given_one_part_when_combined_then_its_own_crc() -> None:
    data = b"hello parquet"
    assert combine_parts([(zlib.crc32(data), len(data))]) == zlib.crc32(data)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 42, 2026])
def test_given_random_part_layout_when_combined_then_equals_crc_of_concatenation(seed: int) -> None:
    rng = random.Random(seed)
    parts = random_parts(rng)

    combined = combine_parts((zlib.crc32(p), len(p)) for p in parts)

    assert combined == zlib.crc32(b"".join(parts))


def test_given_many_seeds_when_combined_then_always_equals_zlib() -> None:
    # Property-style: many random layouts, including runs of empty and one-byte parts.
    for seed in range(300):
        rng = random.Random(seed)
        parts = [rng.randbytes(rng.choice([0, 0, 1, 1, 2, 3, rng.randint(4, 600)])) for _ in range(rng.randint(1, 12))]
        expected = zlib.crc32(b"".join(parts))
        assert combine_parts((zlib.crc32(p), len(p)) for p in parts) == expected, f"seed {seed}"


def test_given_equal_sized_parts_when_combined_then_shared_operator_is_correct() -> None:
    rng = random.Random(7)
    parts = [rng.randbytes(1024) for _ in range(20)] + [rng.randbytes(100)]
    assert combine_parts((zlib.crc32(p), len(p)) for p in parts) == zlib.crc32(b"".join(parts))


def test_given_order_swapped_when_combined_then_crc_differs() -> None:
    # The combination is order-sensitive: the function must not be treating parts as a set.
    a, b = b"first part", b"second part!"
    forward = combine_parts([(zlib.crc32(a), len(a)), (zlib.crc32(b), len(b))])
    backward = combine_parts([(zlib.crc32(b), len(b)), (zlib.crc32(a), len(a))])
    assert forward == zlib.crc32(a + b)
    assert backward == zlib.crc32(b + a)
    assert forward != backward


@pytest.mark.parametrize("seed", range(20))
def test_given_two_blocks_when_crc32_combine_without_operator_then_equals_zlib(seed: int) -> None:
    rng = random.Random(seed)
    a, b = rng.randbytes(rng.randint(0, 3000)), rng.randbytes(rng.randint(0, 3000))
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("seed", range(20))
def test_given_precomputed_operator_when_crc32_combine_then_same_result(seed: int) -> None:
    rng = random.Random(1000 + seed)
    a, b = rng.randbytes(rng.randint(0, 3000)), rng.randbytes(rng.randint(0, 3000))
    operator = shift_operator(len(b))

    with_operator = crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b), operator)

    assert with_operator == zlib.crc32(a + b)
    assert with_operator == crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b))


def test_given_wrong_operator_when_combined_then_result_differs() -> None:
    # Proves the operator argument is actually used (a test that could not fail otherwise).
    a, b = b"a" * 100, b"b" * 50
    right = crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b), shift_operator(len(b)))
    wrong = crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b), shift_operator(len(b) + 1))
    assert right == zlib.crc32(a + b)
    assert wrong != right


def test_given_zero_length_second_block_when_combined_then_first_crc_unchanged() -> None:
    crc = zlib.crc32(b"abc")
    assert crc32_combine(crc, 0, 0) == crc


def test_given_large_length_when_shift_operator_then_matches_zlib_on_real_data() -> None:
    # 6 MiB exercises high bits of the length (beyond the small sizes above).
    rng = random.Random(99)
    a = rng.randbytes(100)
    b = rng.randbytes(6 * 1024 * 1024 + 3)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("crc", [0, 1, 0xCBF43926, 0xFFFFFFFF, 0x80000000, 0x00FF00FF])
def test_given_crc_when_base64_round_tripped_then_same_value(crc: int) -> None:
    assert from_base64(to_base64(crc)) == crc


def test_given_known_crc_when_to_base64_then_s3_big_endian_form() -> None:
    # S3's ChecksumCRC32 is the 4 big-endian bytes, base64-encoded.
    assert to_base64(0xCBF43926) == "y/Q5Jg=="
    assert to_base64(0) == "AAAAAA=="
    assert from_base64("y/Q5Jg==") == 0xCBF43926


def test_given_random_crcs_when_base64_round_tripped_then_same_and_eight_chars() -> None:
    rng = random.Random(5)
    for _ in range(200):
        crc = rng.getrandbits(32)
        encoded = to_base64(crc)
        assert len(encoded) == 8
        assert from_base64(encoded) == crc
