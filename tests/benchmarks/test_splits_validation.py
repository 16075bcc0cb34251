"""The validation split: disjoint from search and test, deterministic, search split unchanged."""

from __future__ import annotations

import pytest

from lpzero_queue.benchmarks.splits import (
    SplitSpec,
    search_positions,
    split_positions,
    validation_positions,
)


def test_validation_is_disjoint_and_leaves_the_search_split_as_it_was() -> None:
    plain, with_val = SplitSpec("sample", 50, 3), SplitSpec("sample", 50, 3, validation=40)
    assert search_positions(500, plain) == search_positions(500, with_val)
    search = set(split_positions(range(500), "search", with_val))
    val = set(split_positions(range(500), "validation", with_val))
    test = set(split_positions(range(500), "test", with_val))
    assert len(search) == 50 and len(val) == 40 and len(test) == 410
    assert not (search & val) and not (search & test) and not (val & test)
    assert validation_positions(500, with_val) == validation_positions(500, with_val)
    assert validation_positions(500, SplitSpec("sample", 50, 4, validation=40)) != sorted(val)
    assert split_positions(range(500), "validation", plain) == []
    assert with_val.label == "sample50-seed3-val40" and plain.label == "sample50-seed3"


def test_validation_split_must_leave_a_test_split_and_have_three_members() -> None:
    with pytest.raises(ValueError, match="must leave a test split"):
        validation_positions(60, SplitSpec("sample", 50, 0, validation=10))
    with pytest.raises(ValueError, match="0 or at least 3"):
        SplitSpec("sample", 50, 0, validation=2)
