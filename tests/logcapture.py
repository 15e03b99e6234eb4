"""Capture what the app's JSON logging writes, as parsed lines (shared by the logging, middleware and job tests)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from observability_app.logging import ACCESS_LOGGER, ContextFilter, JsonFormatter

LOGGERS = ("", "django", ACCESS_LOGGER)  # the root and the loggers that do not propagate to it


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        """Every line, each parsed as one JSON object (a line that is not JSON fails the test here)."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def access(self) -> list[dict]:
        return [line for line in self.lines() if line["logger"] == ACCESS_LOGGER]


@contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[Captured]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.addHandler(handler)
        logger.setLevel(level)
    try:
        yield Captured(stream)
    finally:
        for logger, old_level in saved:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
