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
