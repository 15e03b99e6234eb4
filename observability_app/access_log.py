"""The access log's write path: records made cheaply, and a file handler that writes in batches.

The access line is written on every request, so its cost is the middleware's cost. Two things keep it small:

* :func:`access_record` makes the ``LogRecord`` from a per-process template instead of ``LogRecord.__init__``;
  every attribute a handler or formatter may read is there.
* :class:`AccessLogHandler` (what ``logging_config(access_log=...)`` installs) buffers lines and writes them in one
  system call per batch, the way nginx's ``access_log ... buffer=32k flush=1s`` does: a batch is written when it
  holds ``buffer_lines`` lines, when a WARNING or worse line arrives (4xx/5xx are never held back), at the latest
  ``flush_seconds`` after its first line (a background thread), and when logging shuts down. When the access
  logger's only handler is one of these with our formatter, the middleware hands it the line's values directly
  (:meth:`AccessLogHandler.write_values`): no ``LogRecord``, no handler chain, and the line's text is made with the
  rest of its batch.

What a batch holds is lost if the process is killed outright (SIGKILL, OOM): at most ``buffer_lines`` lines or
``flush_seconds`` of successes. ``buffer_lines=1`` writes every line at once, like ``logging.FileHandler``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any

from .logging import ACCESS_FIELDS, ACCESS_LOGGER, ContextFilter, JsonFormatter, access_text, access_values

_template: dict[str, Any] | None = None


def _record_template() -> dict[str, Any]:
    """The attributes every access record shares in this process (made once per process, again after a fork)."""
    global _template
    if _template is None:
        values = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "", None, None).__dict__
        values.pop("message", None)
        values["_obs_access"] = 0
        values["obs_context"] = None
        _template = values
    return _template


_ACCESS_KEYS = frozenset(ACCESS_FIELDS)
_LEVEL_NAMES = {logging.INFO: "INFO", logging.WARNING: "WARNING", logging.ERROR: "ERROR"}
_new = object.__new__


def _level_name(level: int) -> str:
    return _LEVEL_NAMES.get(level) or logging.getLevelName(level)


_get_ident = threading.get_ident
_current_thread = threading.current_thread


def access_record(level: int, message: str, ctx: Any, fields: dict[str, Any]) -> logging.LogRecord:
    """A ``LogRecord`` of the access logger, made without ``LogRecord.__init__`` (a dozen look-ups per line).

    The per-process attributes (process, file, function) come from a template, the per-line ones (time, thread,
    level, message) are set here. ``_obs_access`` holds the record's attribute count, so that the formatter can
    tell a record that a filter added attributes to, or that has fields beyond :data:`ACCESS_FIELDS` (it then takes
    its general path, which writes them).
    """
    created = time.time()
    record = _new(logging.LogRecord)
    values = {
        **(_template or _record_template()),
        **fields,
        "obs_context": ctx,
        "created": created,
        "msecs": int((created - int(created)) * 1000) + 0.0,
        "relativeCreated": (created - logging._startTime) * 1000,
        "levelno": level,
        "levelname": _level_name(level),
        "msg": message,
        "thread": _get_ident(),
        "threadName": _current_thread().name,
    }
    # Beyond the access line's own fields (debug logging, a rejected id's length) the formatter's general path
    # writes them: 0 sends it there, as a filter's added attribute does.
    values["_obs_access"] = len(values) if fields.keys() == _ACCESS_KEYS else 0
    record.__dict__ = values
    return record


class AccessLogHandler(logging.FileHandler):
    """A ``FileHandler`` that writes the access log in batches (see the module docstring).

    ``logging_config(access_log=path, access_log_buffer=256, access_log_flush_seconds=1.0)`` installs it; in a
    ``LOGGING`` dict of your own: ``{"class": "observability_app.access_log.AccessLogHandler", "filename": ...,
    "buffer_lines": 256, "flush_seconds": 1.0}``. Any record can go through it (``emit``); lines of other loggers
    are formatted at once and written with the batch, in order.
    """

    def __init__(
        self,
        filename: str,
        mode: str = "a",
        encoding: str | None = "utf-8",
        delay: bool = False,
        errors: str | None = None,
        *,
        buffer_lines: int = 256,
        flush_seconds: float = 1.0,
    ) -> None:
        if int(buffer_lines) < 1:
            raise ValueError(f"buffer_lines={buffer_lines!r}: give 1 (write every line at once) or more")
        if not float(flush_seconds) > 0:
            raise ValueError(f"flush_seconds={flush_seconds!r}: give a positive number of seconds, such as 1.0")
        super().__init__(filename, mode, encoding, delay, errors)
        self.buffer_lines = int(buffer_lines)
        self.flush_seconds = float(flush_seconds)
        # Lines of other loggers (str) and the middleware's values (tuple), in order.
        self._pending: list[str | tuple[Any, ...]] = []
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        _handlers.add(self)

    # -- writing -----------------------------------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        if self.buffer_lines == 1:
            super().emit(record)
            return
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_values(line, record.levelno)

    def write_access(self, level: int, message: str, ctx: Any, fields: dict[str, Any]) -> None:
        """An access line from the context and the request's :data:`~observability_app.logging.ACCESS_FIELDS`."""
        try:
            values = access_values(
                time.time(), _level_name(level), message, ctx, *map(fields.__getitem__, ACCESS_FIELDS), live=False
            )
        except Exception:
            self.handleError(logging.makeLogRecord({"name": ACCESS_LOGGER, "msg": message, "levelno": level}))
            return
        self.write_values(values, level)

    def write_values(self, values: tuple[Any, ...] | str, level: int) -> None:
        """The middleware's path: the line's values, read now; its text is made with the rest of the batch (a
        line already made, what :meth:`emit` passes, waits as it is).

        ``values`` come from :func:`~observability_app.logging.access_values`, a flat tuple of strings and
        numbers: holding the context would hold the request with it (``ctx.user`` is the lazy ``request.user``,
        whose closure is the request), and a batch of 256 request graphs outliving their requests into the
        collector's oldest generation costs a full collection each time a batch lets go of them. Made in one loop
        per batch, the lines cost less than one by one between requests (the loop's code and data stay in the
        processor's caches). The trace ids are the context's (the middleware put them there), never a lookup of
        whichever span is current.
        """
        with self.lock:
            pending = self._pending
            pending.append(values)
            if len(pending) >= self.buffer_lines or level >= logging.WARNING:
                self._write_pending()
            elif self._flusher is None:
                self._start_flusher()

    def _write_pending(self) -> None:
        """Make the lines of what is pending and write them in one call (the caller holds the lock)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        lines = []
        for item in pending:
            if type(item) is str:
                lines.append(item)
                continue
            try:
                lines.append(access_text(item))
            except Exception:
                self.handleError(logging.makeLogRecord({"name": ACCESS_LOGGER, "msg": item[2], "levelno": 0}))
        if self.stream is None:
            if self.mode == "w" and self._closed:
                return
            self.stream = self._open()
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"name": ACCESS_LOGGER, "msg": f"{len(lines)} access lines"}))

    def flush(self) -> None:
        with self.lock:
            self._write_pending()
            super().flush()

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            self._write_pending()
        super().close()

    # -- the timer that writes an idle batch -------------------------------------------------------------------
    def _start_flusher(self) -> None:
        self._flusher = threading.Thread(
            target=_flush_periodically,
            args=(weakref.ref(self), self._stop, self.flush_seconds),
            name="observability-access-log-flusher",
            daemon=True,
        )
        self._flusher.start()

    def _after_fork(self) -> None:
        """In a forked child (a gunicorn worker): the parent's pending lines are the parent's; no flusher runs."""
        self._pending = []
        self._flusher = None
        self._stop = threading.Event()


def _flush_periodically(ref: weakref.ref, stop: threading.Event, seconds: float) -> None:
    while not stop.wait(seconds):
        handler = ref()
        if handler is None:
            return
        handler.flush()
        del handler


_handlers: weakref.WeakSet[AccessLogHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _template
    _template = None
    for handler in list(_handlers):
        handler._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def direct_writer(logger: logging.Logger, level: int) -> AccessLogHandler | None:
    """The handler the middleware may give the line's values to directly, or None for the standard path.

    Only when nothing else would see the record: the logger's one handler is an :class:`AccessLogHandler` that
    buffers, with this app's formatter, no filters but :class:`ContextFilter`, and the logger neither propagates
    nor filters. Checked on every line (a dozen attribute reads), so that a reconfigured logging takes effect.
    """
    handlers = logger.handlers
    if len(handlers) != 1 or logger.propagate or logger.filters or logger.disabled:
        return None
    handler = handlers[0]
    if (
        type(handler) is not AccessLogHandler
        or handler.buffer_lines == 1
        or level < handler.level
        or type(handler.formatter) is not JsonFormatter
    ):
        return None
    for each in handler.filters:
        if type(each) is not ContextFilter:
            return None
    return handler
