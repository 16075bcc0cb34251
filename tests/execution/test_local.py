"""The in-process executor: the same rows with one or several scoring processes."""

from __future__ import annotations

import pytest

from lpzero_queue.benchmarks.records import load_shipped
from lpzero_queue.execution.local import LocalExecutor
from lpzero_queue.proxies.expression import LPZERO_FLEXIBERT
from lpzero_queue.proxies.scoring import ArchRef, ScoringSetup, WorkUnit


@pytest.mark.slow
def test_several_processes_give_the_rows_of_one() -> None:
    records = load_shipped("flexibert").records[:5]
    archs = tuple(ArchRef(i + 1, r.key, r.config) for i, r in enumerate(records))
    setup = ScoringSetup.resolve("flexibert", batch_size=2, seq_len=16)
    exprs = (LPZERO_FLEXIBERT, "sum(mean(abs(grad)), l1_norm(act))")
    units = [
        WorkUnit(setup, 0, archs[:3], exprs, ("params",)),
        WorkUnit(setup, 0, archs[3:], exprs, ()),
    ]
    one = LocalExecutor(cache_bytes=2**30, processes=1, torch_threads=1)
    two = LocalExecutor(cache_bytes=2**30, processes=2, torch_threads=1)
    try:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            expected = [
                (u, [(r.arch_id, r.proxy, r.score, r.status) for r in rows])
                for u, rows in one.run(units)
            ]
        finally:
            torch.set_num_threads(threads)
        got = [
            (u, [(r.arch_id, r.proxy, r.score, r.status) for r in rows])
            for u, rows in two.run(units)
        ]
        again = [
            (u, [(r.arch_id, r.proxy, r.score, r.status) for r in rows])
            for u, rows in two.run(units)
        ]  # warm caches in the children
    finally:
        two.close()
    assert got == expected == again
    assert all(status == "ok" for _, rows in got for *_, status in rows)
