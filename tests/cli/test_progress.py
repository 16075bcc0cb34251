"""Without a terminal, long work reports progress as occasional one-line messages."""

from __future__ import annotations

import pytest

from lpzero_queue.cli import _progress


def test_progress_without_a_terminal_prints_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_progress, "LOG_EVERY_S", 3600.0)
    with _progress.progress_bar("search run 7") as advance:
        advance(1, 26, best="+0.500")
        advance(2, 26, best="+0.600")  # within the interval: not printed
        advance(26, 26, best="+0.800")  # the end is always printed
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("lpzq: search run 7: 1/26 after ") and lines[0].endswith(
        "best +0.500"
    )
    assert lines[1].startswith("lpzq: search run 7: 26/26") and lines[1].endswith("best +0.800")


def test_lines_carry_an_eta_at_the_rate_so_far(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([1000.0, 1001.0, 1040.0, 1100.0])  # started, then three reports
    monkeypatch.setattr(_progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(_progress, "LOG_EVERY_S", 30.0)
    with _progress.progress_bar("loading flexibert") as advance:
        advance(1, 500)  # start-up: too early for an ETA
        advance(100, 500)  # 40 s for 100: 160 s for the other 400
        advance(500, 500)
    start, first, last = capsys.readouterr().err.strip().splitlines()
    assert start == "lpzq: loading flexibert: 1/500 after 1 s"
    assert first == "lpzq: loading flexibert: 100/500 after 40 s  eta 2 min 40 s"
    assert last == "lpzq: loading flexibert: 500/500 after 100 s"


def test_eta_text() -> None:
    assert [_progress.eta_text(s) for s in (4.4, 59.6, 61, 3599, 7380)] == [
        "4 s",
        "1 min 0 s",
        "1 min 1 s",
        "59 min 59 s",
        "2 h 3 min",
    ]
