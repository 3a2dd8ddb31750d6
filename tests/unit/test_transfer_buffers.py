"""PartBufferPool: ranged parts reuse memory maps, never more of them than the pool may keep."""

from __future__ import annotations

import pytest

from omborigrid_export.transfer.buffers import PartBufferPool

PART = 64 * 1024


def test_given_a_part_given_back_when_the_next_is_taken_then_its_map_is_reused() -> None:
    pool = PartBufferPool(PART, keep=2)
    first = pool.take(PART)
    with first.view() as view:
        view[:5] = b"hello"
    used = first.map
    first.close()
    second = pool.take(PART)
    assert second.map is used
    with second.view() as view:
        assert len(view) == PART
    second.close()
    pool.close()
    assert used.closed


def test_given_a_short_last_part_then_its_view_is_its_own_length() -> None:
    pool = PartBufferPool(PART, keep=1)
    last = pool.take(1000)
    with last.view() as view:
        assert len(view) == 1000
    assert len(last) == 1000
    last.close()
    pool.close()


def test_given_more_parts_back_than_kept_then_the_extra_maps_are_unmapped() -> None:
    pool = PartBufferPool(PART, keep=1)
    a, b = pool.take(PART), pool.take(PART)
    assert a.map is not b.map
    a.close()
    b.close()
    assert not a.map.closed  # kept for the next part
    assert b.map.closed  # one more than the pool keeps
    pool.close()
    assert a.map.closed


def test_given_a_closed_pool_when_a_part_comes_back_then_its_map_is_unmapped() -> None:
    pool = PartBufferPool(PART, keep=4)
    late = pool.take(PART)
    pool.close()
    late.close()
    assert late.map.closed


def test_given_a_part_larger_than_the_pool_parts_then_value_error() -> None:
    pool = PartBufferPool(PART, keep=1)
    with pytest.raises(ValueError, match="does not fit"):
        pool.take(PART + 1)
    pool.close()


def test_given_a_part_closed_twice_then_its_map_goes_back_once() -> None:
    pool = PartBufferPool(PART, keep=4)
    part = pool.take(PART)
    part.close()
    part.close()
    assert pool.take(PART).map is part.map
    assert pool.take(PART).map is not part.map
    pool.close()
