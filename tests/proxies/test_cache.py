"""Contracts of the byte-bounded LRU input cache with disk spill."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lpzero_queue.proxies.cache import InputCache
from lpzero_queue.proxies.inputs import InputsKey, ProxyInputs
from lpzero_queue.proxies.operators import INPUT_NAMES

ENTRY_BYTES = len(INPUT_NAMES) * 2 * 100 * 4  # six inputs x two (10, 10) float32 tensors


def key(i: int) -> InputsKey:
    return InputsKey("flexibert", f"{i:064x}", "faithful", 0, "b" * 64, "mlm")


def make_inputs(i: int, dtype: torch.dtype = torch.float32) -> ProxyInputs:
    gen = torch.Generator().manual_seed(i)
    tensors = {
        name: tuple(torch.randn(10, 10, generator=gen).to(dtype) for _ in range(2))
        for name in INPUT_NAMES
    }
    return ProxyInputs(key=key(i), tensors=tensors, seconds=0.5)


class Counter:
    """A compute function factory that counts its calls per key."""

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}

    def __call__(self, i: int) -> Callable[[], ProxyInputs]:
        def compute() -> ProxyInputs:
            self.calls[i] = self.calls.get(i, 0) + 1
            return make_inputs(i)

        return compute


def test_entry_size() -> None:
    assert make_inputs(0).nbytes == ENTRY_BYTES


def test_hits_misses_and_single_compute_per_key() -> None:
    cache, compute = InputCache(max_bytes=10 * ENTRY_BYTES), Counter()
    for _ in range(5):
        for i in range(3):
            cache.get_or_compute(key(i), compute(i))
    assert compute.calls == {0: 1, 1: 1, 2: 1}
    s = cache.stats()
    assert (s.hits, s.misses, s.computes, s.disk_loads, s.evictions) == (12, 3, 3, 0, 0)
    assert (s.entries, s.bytes_in_ram) == (3, 3 * ENTRY_BYTES)


def test_returns_the_cached_object() -> None:
    cache = InputCache(max_bytes=10 * ENTRY_BYTES)
    first = cache.get_or_compute(key(0), lambda: make_inputs(0))
    assert cache.get_or_compute(key(0), lambda: pytest.fail("recomputed")) is first


def test_lru_order_and_byte_bound() -> None:
    cache, compute = InputCache(max_bytes=3 * ENTRY_BYTES), Counter()
    for i in range(3):
        cache.get_or_compute(key(i), compute(i))
    cache.get_or_compute(key(0), compute(0))  # 0 becomes most recent: order 1, 2, 0
    cache.get_or_compute(key(3), compute(3))  # evicts 1
    assert cache.keys() == [key(2), key(0), key(3)]
    assert key(1) not in cache
    s = cache.stats()
    assert s.evictions == 1 and s.bytes_in_ram == 3 * ENTRY_BYTES <= cache.max_bytes
    cache.get_or_compute(key(1), compute(1))  # gone without spill: recomputed, evicts 2
    assert compute.calls[1] == 2
    assert cache.keys() == [key(0), key(3), key(1)]
    for i in range(10, 30):
        cache.get_or_compute(key(i), compute(i))
        assert cache.stats().bytes_in_ram <= cache.max_bytes


def test_entry_larger_than_budget_is_returned_not_kept() -> None:
    cache = InputCache(max_bytes=ENTRY_BYTES - 1)
    out = cache.get_or_compute(key(0), lambda: make_inputs(0))
    assert out.key == key(0)
    assert cache.stats().entries == 0 and cache.stats().bytes_in_ram == 0


def test_spill_round_trip_is_bit_identical(tmp_path: Path) -> None:
    cache, compute = InputCache(max_bytes=2 * ENTRY_BYTES, spill_dir=tmp_path), Counter()
    originals = {i: make_inputs(i) for i in range(4)}
    for i in range(4):
        cache.get_or_compute(key(i), compute(i))
    assert {p.name for p in tmp_path.iterdir()} == {f"{key(i).digest}.pt" for i in (0, 1)}
    back = cache.get_or_compute(key(0), compute(0))  # from disk, not recomputed
    assert compute.calls[0] == 1
    s = cache.stats()
    assert (s.disk_loads, s.computes, s.misses) == (1, 4, 5)
    assert back.key == key(0) and back.seconds == originals[0].seconds
    for name in INPUT_NAMES:
        assert isinstance(back.tensors[name], tuple)
        for x, y in zip(back.tensors[name], originals[0].tensors[name], strict=True):
            assert x.dtype == y.dtype and torch.equal(x, y)
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind
    # A new cache on the same directory reads the spilled entries instead of computing.
    fresh = InputCache(max_bytes=2 * ENTRY_BYTES, spill_dir=tmp_path)
    fresh.get_or_compute(key(1), lambda: pytest.fail("recomputed"))
    assert fresh.stats().disk_loads == 1


def test_spill_of_another_dtype_or_corrupt_file_is_recomputed(tmp_path: Path) -> None:
    cache = InputCache(max_bytes=ENTRY_BYTES, spill_dir=tmp_path)
    cache.get_or_compute(key(0), lambda: make_inputs(0))
    cache.get_or_compute(key(1), lambda: make_inputs(1))  # spills 0 as float32
    half = InputCache(max_bytes=ENTRY_BYTES, spill_dir=tmp_path, dtype=torch.float16)
    out = half.get_or_compute(key(0), lambda: make_inputs(0))
    assert half.stats().computes == 1 and out.dtype == torch.float16  # cast on insertion
    (tmp_path / f"{key(2).digest}.pt").write_bytes(b"not a torch file")
    assert cache.get_or_compute(key(2), lambda: make_inputs(2)).key == key(2)
    assert cache.stats().disk_loads == 0


def test_failing_compute_leaves_cache_unchanged(tmp_path: Path) -> None:
    cache = InputCache(max_bytes=2 * ENTRY_BYTES, spill_dir=tmp_path)
    for i in range(2):
        cache.get_or_compute(key(i), Counter()(i))
    before = (cache.keys(), cache.stats())

    def fail() -> ProxyInputs:
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        cache.get_or_compute(key(2), fail)
    with pytest.raises(ValueError, match="expected"):
        cache.get_or_compute(key(3), lambda: make_inputs(4))  # wrong key
    after = cache.stats()
    assert cache.keys() == before[0]
    assert after.failed_computes == 2
    assert after == type(after)(**{**before[1].__dict__, "failed_computes": 2})
    assert not list(tmp_path.iterdir())  # nothing spilled


def test_a_spill_that_cannot_be_written_drops_the_entry_not_the_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the spill directory should be: mkdir fails
    cache = InputCache(max_bytes=ENTRY_BYTES, spill_dir=blocker / "spill")
    cache.get_or_compute(key(0), lambda: make_inputs(0))
    got = cache.get_or_compute(key(1), lambda: make_inputs(1))  # evicts key 0: its spill fails
    assert got.key == key(1) and cache.keys() == [key(1)]
    stats = cache.stats()
    assert stats.failed_spills == 1 and stats.evictions == 1
    assert stats.bytes_in_ram == ENTRY_BYTES
    assert not list(tmp_path.rglob("*.tmp"))  # no partial file left behind
    recomputed: list[int] = []
    cache.get_or_compute(key(0), lambda: recomputed.append(0) or make_inputs(0))
    assert recomputed == [0]  # the dropped entry is computed again when needed


def test_spill_directory_is_bounded_oldest_first(tmp_path: Path) -> None:
    probe = InputCache(max_bytes=0, spill_dir=tmp_path / "probe")  # spills everything it sees
    probe.get_or_compute(key(9), lambda: make_inputs(9))
    file_bytes = next((tmp_path / "probe").glob("*.pt")).stat().st_size
    spill = tmp_path / "spill"
    budget = 2 * file_bytes + file_bytes // 2  # room for two spill files
    cache = InputCache(max_bytes=ENTRY_BYTES, spill_dir=spill, spill_max_bytes=budget)
    for i in range(5):  # each insertion evicts (and spills) the previous entry
        cache.get_or_compute(key(i), lambda i=i: make_inputs(i))
    files = sorted(p.stem for p in spill.glob("*.pt"))
    assert files == sorted([key(2).digest, key(3).digest])  # the two newest spills
    assert cache.stats().failed_spills == 0
    loads = cache.stats().disk_loads
    cache.get_or_compute(key(3), lambda: pytest.fail("key 3 should come from its spill file"))
    assert cache.stats().disk_loads == loads + 1


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        InputCache(max_bytes=-1)
    with pytest.raises(ValueError, match="dtype"):
        InputCache(max_bytes=1, dtype=torch.float64)


def test_low_disk_is_said_once_per_process_with_the_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    from lpzero_queue.proxies import cache as cache_module

    monkeypatch.setattr(cache_module, "_warned", set())
    usage = shutil.disk_usage(tmp_path)._replace(free=int(1.5 * 2**30))
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda _: usage)
    with caplog.at_level("WARNING", logger=cache_module.__name__):
        for _ in range(2):  # two caches of one process: still one line
            cache = InputCache(max_bytes=ENTRY_BYTES, spill_dir=tmp_path / "spill")
            for i in range(5):
                cache.get_or_compute(key(i), lambda i=i: make_inputs(i))
            assert cache.stats().failed_spills == 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "1.5 GiB free" in lines[0] and "2 GiB" in lines[0]
