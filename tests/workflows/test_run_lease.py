"""The coordinator's hold on a run: a heartbeat thread keeps the lease live through long work."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from lpzero_queue.storage import (
    Benchmark,
    RunLease,
    RunLeaseHeldError,
    RunLeaseLostError,
    RunRepository,
    transaction,
)
from lpzero_queue.workflows._run_lease import holding_run


@pytest.fixture
def runs(migrated_engine: Engine) -> RunRepository:
    sessions = sessionmaker(migrated_engine, expire_on_commit=False)
    with transaction(sessions) as s:
        bench = Benchmark(name="b", space="gpt2", metric="valid_ppl", direction="lower")
        s.add(bench)
        s.flush()
        bench_id = bench.id
    repo = RunRepository(sessions)
    repo.create(benchmark_id=bench_id, config={}, seed=0, code_version="v", library_versions={})
    return repo


def test_the_heartbeat_keeps_a_short_lease_live_while_the_coordinator_works(
    runs: RunRepository,
) -> None:
    lease = RunLease(1, "worker-a", 0.9)  # renewed every 0.3 s
    with holding_run(runs, lease) as beat:
        runs.mark_running(lease)
        time.sleep(2.5)  # a long stretch inside one generation: nearly 3 leases
        run = runs.get(1)
        assert run.lease_owner == "worker-a" and run.lease_live and not run.stale
        with pytest.raises(RunLeaseHeldError, match="worker-a"):
            runs.acquire_lease(RunLease(1, "worker-b", 60.0))
        beat.check()  # still ours
    after = runs.get(1)
    assert after.lease_owner is None and after.stale  # given up on return; nobody drives it


def test_a_heartbeat_that_finds_the_lease_taken_stops_the_coordinator(
    runs: RunRepository,
) -> None:
    lease = RunLease(1, "worker-a", 0.9)
    with holding_run(runs, lease) as beat:
        runs.release_lease(lease)
        runs.acquire_lease(RunLease(1, "worker-b", 60.0))  # taken over
        assert beat.lost.wait(5)
        with pytest.raises(RunLeaseLostError, match="worker-a"):
            beat.check()
    assert runs.get(1).lease_owner == "worker-b"  # leaving did not release the newcomer's lease
