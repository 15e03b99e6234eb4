"""A log target that cannot be written (full disk, unwritable file, closed pipe): dropped, counted, warned once."""

from __future__ import annotations

import logging

from observability_app.access_log import AccessLogHandler
from observability_app.logging import JsonFormatter, StreamHandler
from observability_app.metrics.families import LOG_LINES_DROPPED


def _dropped(target: str) -> float:
    return LOG_LINES_DROPPED.labels(target)._value.get()


def _record(message: str) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "observability_app.access", "msg": message, "levelno": logging.INFO})


def test_a_full_disk_drops_and_counts_every_batch_and_warns_once(capfd):
    handler = AccessLogHandler("/dev/full", buffer_lines=2)  # every write fails with ENOSPC, like a full disk
    handler.setFormatter(JsonFormatter())
    before = _dropped("access_log")
    try:
        for index in range(10):
            handler.emit(_record(f"line {index}"))  # five batches of two
        handler.flush()
    finally:
        handler.close()
    assert _dropped("access_log") - before == 10
    err = capfd.readouterr().err
    assert err.count("cannot write log lines to /dev/full") == 1, err
    assert "Traceback" not in err


def test_an_unwritable_file_does_not_stop_start_up_and_counts(tmp_path, capfd):
    target = tmp_path / "no" / "such" / "dir" / "access.log"
    handler = AccessLogHandler(str(target), buffer_lines=1)
    handler.setFormatter(JsonFormatter())
    before = _dropped("access_log")
    for index in range(3):
        handler.emit(_record(f"line {index}"))
    handler.close()
    assert _dropped("access_log") - before == 3
    err = capfd.readouterr().err
    assert err.count("cannot write log lines") == 1 and "Traceback" not in err


def test_a_closed_stream_drops_counts_and_recovers(capfd):
    class Flaky:
        name = "<flaky>"
        broken = True

        def write(self, text: str) -> None:
            if self.broken:
                raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

    stream = Flaky()
    handler = StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    before = _dropped("stream")
    for index in range(4):
        handler.emit(_record(f"line {index}"))
    stream.broken = False
    handler.emit(_record("back"))
    assert _dropped("stream") - before == 4
    err = capfd.readouterr().err
    assert err.count("cannot write log lines to <flaky>") == 1 and "Traceback" not in err
    assert "writing log lines to <flaky> again" in err
