"""Run leases through the real lpzq: stale runs shown as such, taken over by resume, live ones
refused."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import sessionmaker

from lpzero_queue.search.config import SearchConfig
from lpzero_queue.storage import RunLease, RunRepository, SearchRun, make_engine, transaction
from lpzero_queue.workflows.search_run import create_run
from tests.cli.conftest import import_short_gpt2, one_process
from tests.conftest import message_lines, run_lpzq

TINY = SearchConfig.from_dict(
    {"population": 4, "children": 4, "per_generation": 4, "sample": 4, "batch_size": 2}
)
CRASHED = "crashed-host:4242:dead"  # its coordinator died: the lease lapsed
BUSY = "busy-host:5151:beef"  # alive elsewhere: the lease is live


def _runs(cli_env: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], str]:
    """Run 1: running, its lease lapsed a minute ago. Run 2: running, held for ten minutes."""
    url = f"sqlite:///{tmp_path / 'lpzq.sqlite3'}"
    env = {**one_process(cli_env), "LPZQ_DATABASE_URL": url}
    import_short_gpt2(env, tmp_path)
    engine = make_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    runs = RunRepository(sessions)
    for owner, lease_s in ((CRASHED, 60.0), (BUSY, 600.0)):
        lease = RunLease(create_run(sessions, "short", TINY), owner, lease_s)
        runs.acquire_lease(lease)
        runs.mark_running(lease)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with transaction(sessions) as s:
        s.execute(update(SearchRun).where(SearchRun.id == 1).values(lease_expires_at=past))
    engine.dispose()
    return env, url


def test_list_and_status_show_a_lapsed_run_as_stale_and_resume_refuses_a_live_one(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env, _ = _runs(cli_env, tmp_path)
    out = run_lpzq("search", "list", env=env)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[2] for line in out.stdout.splitlines()[2:]}
    assert rows == {"1": "stale", "2": "running"}, out.stdout
    stale = json.loads(run_lpzq("search", "status", "1", "--json", env=env).stdout)
    assert stale["status"] == "stale"
    assert stale["lease"].startswith(f"{CRASHED}, lapsed at ")
    live = json.loads(run_lpzq("search", "status", "2", "--json", env=env).stdout)
    assert live["status"] == "running" and live["lease"].startswith(f"{BUSY}, lapses at ")
    text = run_lpzq("search", "status", "1", env=env).stdout
    assert re.search(r"^status +stale$", text, re.MULTILINE), text

    out = run_lpzq("search", "resume", "2", env=env)
    assert out.returncode == 1
    [line] = message_lines(out.stderr)
    assert re.fullmatch(
        rf"lpzq: error: search run 2 is driven by another coordinator \({BUSY}\); its lease "
        r"lapses at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC unless renewed; .*",
        line,
    ), line
    after = json.loads(run_lpzq("search", "status", "2", "--json", env=env).stdout)
    assert (after["status"], after["candidates"]) == ("running", 0)  # nothing was done to it


@pytest.mark.slow
def test_resume_takes_a_stale_run_over_and_completes_it(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env, url = _runs(cli_env, tmp_path)
    out = run_lpzq("search", "resume", "1", env=env)
    assert out.returncode == 0, out.stderr
    done = json.loads(run_lpzq("search", "status", "1", "--json", env=env).stdout)
    assert done["status"] == "completed" and done["candidates"] >= 8
    assert done["lease"] is None  # the coordinator gave the run up when it finished
    engine = make_engine(url)
    other = RunRepository(sessionmaker(engine)).get(2)
    engine.dispose()
    assert (other.lease_owner, other.status) == (BUSY, "running")  # the live run untouched
