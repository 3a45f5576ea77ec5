"""Progress: a bar on a terminal, a log line per tenth of the work elsewhere, never a redrawn bar in a log."""

import logging

from tstcnn.progress import LogProgress, progress


def test_off_a_terminal_progress_is_one_log_line_per_tenth_and_the_last(caplog):
    with caplog.at_level(logging.INFO, logger="tstcnn.progress"):
        for _ in progress(range(95), desc="prepare", unit="video"):
            pass
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10 and lines[0].startswith("prepare: 10/95 video (11%)")
    assert lines[-1].startswith("prepare: 95/95 video (100%)") and not any("\r" in line for line in lines)


def test_disabled_progress_logs_nothing_and_updates_count(caplog):
    with caplog.at_level(logging.INFO, logger="tstcnn.progress"):
        bar = progress(total=4, desc="detect", enabled=False)
        bar.update(4)
        bar.close()
    assert isinstance(bar, LogProgress) and bar.n == 4 and caplog.records == []
