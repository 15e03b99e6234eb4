"""The access line, all of it: the middleware's one call, the line's fields, its text, and the handlers that batch it.

The middleware calls :meth:`AccessLog.write` once per request (outside ``EXCLUDED_PATHS``, after sampling). What the
line says is the one dict :func:`access_values` builds: **adding a field is one entry there** (plus its test); the
line's text (:func:`access_text`, one encoder call: orjson with the ``[fast]`` extra, else ``json``) and the record
a formatter sees (the request's :data:`ACCESS_FIELDS` as attributes) follow from it.

Two paths, one line (the tests hold them to the same object):

* **direct**: when the access logger's only handler is a batching handler of this module with the app's own
  :class:`~observability_app.logging.JsonFormatter` (not a subclass) and nothing else would see a record (no
  propagation, no filters but :class:`~observability_app.logging.ContextFilter`), the line's values go straight to
  the handler (:meth:`BatchingHandler.write_values`) and its text is made with the rest of its batch. No
  ``LogRecord``, no handler chain.
* **record**: otherwise a ``LogRecord`` is made with ``Logger.makeRecord`` (the public constructor) carrying the
  line's fields as attributes, and goes through ``Logger.handle``: every handler, filter and formatter sees it,
  and a ``JsonFormatter`` subclass's ``add_fields`` / ``process_log_record`` run on it as on any other line.

Batching (:class:`BatchingHandler`; :class:`BatchingStreamHandler` for stdout, what ``logging_config()`` installs,
and :class:`AccessLogHandler` for a file) works the way nginx's ``access_log ... buffer=32k flush=1s`` does: lines
wait until ``buffer_lines`` are pending (bounded memory), a WARNING or worse line writes the batch at once (errors are
never held back), a background timer writes an idle batch ``flush_seconds`` after its first line, and logging's
shutdown (at exit), a fork (the parent's batch is written before the child exists) and SIGTERM (when nothing else
handles it) write what is pending. What a batch holds is lost only when the process is killed outright (SIGKILL,
OOM): at most ``buffer_lines`` lines or ``flush_seconds`` of successes. ``buffer_lines=1`` writes every line at once.

A log target that cannot take a line (a full disk, ``/dev/full``, a closed pipe, a file that cannot be opened) never
fails the request: the lines are dropped, counted (the :data:`lines_dropped` signal, which the metrics turn into
``observability_log_lines_dropped_total{handler}``), and one warning per handler goes to stderr.

*Changed in issue 14*: the line moved here from ``logging.py`` and ``middleware.py``; records are made with the
public ``makeRecord``; stdout is batched like the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import weakref
from typing import Any

from django.dispatch import Signal

from .ecs import to_ecs
from .logging import (
    ACCESS_LOGGER,
    ContextFilter,
    JsonFormatter,
    ecs_format,
    format_timestamp,
    identity,
)

__all__ = [
    "ACCESS_FIELDS",
    "ACCESS_LOGGER",
    "AccessLog",
    "AccessLogHandler",
    "BatchingHandler",
    "BatchingStreamHandler",
    "access_dict",
    "access_text",
    "access_values",
    "direct_writer",
    "lines_dropped",
]

#: Sent with ``handler`` (its name for the metric: ``"stdout"``, ``"stderr"`` or ``"file"``) and ``count`` when a
#: handler drops lines its target would not take.
lines_dropped = Signal()

# -- the line ----------------------------------------------------------------------------------------------------
#: The fields of the request (beyond the context's) that every access line carries, as record attributes on the
#: record path.
ACCESS_FIELDS = ("route", "method", "path", "status_code", "duration_ms", "bytes", "outcome", "user_agent")

_LEVEL_NAMES = {logging.INFO: "INFO", logging.WARNING: "WARNING", logging.ERROR: "ERROR"}


def access_values(
    created: float,
    level: int,
    ctx: Any,
    route: str,
    method: str,
    path: str,
    status: int,
    duration_ms: float,
    size: int | None,
    user_agent: str | None,
) -> dict[str, Any]:
    """The access line as its JSON object: **the one place that says what the line holds** (add a field here).

    The SPEC fields first, in docs/logging.md's order, read from the context now, then the request's own. Values
    are strings, numbers and None only: a line waiting for its batch holds neither the context nor the request
    (``ctx.user`` is the lazy ``request.user``, whose closure is the request). The trace ids are the context's (the
    middleware put them there when tracing is on), never a look-up of whichever span is current when a batch is
    written. A dict literal: cheaper to build than any table walk (this runs on every request).
    """
    service, environment = identity()
    line = {
        "timestamp": format_timestamp(created),
        "level": _LEVEL_NAMES.get(level) or logging.getLevelName(level),
        "message": f"{method} {route} {status}",
        "logger": ACCESS_LOGGER,
        "service": service,
        "environment": environment,
        "request_id": ctx.request_id or None,
        "correlation_id": ctx.correlation_id or None,
        "trace_id": ctx.trace_id or None,
        "span_id": ctx.span_id or None,
        "user_id": ctx.user_id() or None,
        "ip": ctx.ip or None,
        "route": route,
        "method": method,
        "status_code": status,
        "duration_ms": duration_ms,
        "outcome": "success" if status < 400 else "error",
        "source": ctx.source or None,
    }
    if ctx.org_id:
        line["org_id"] = ctx.org_id
    if ctx.project_id:
        line["project_id"] = ctx.project_id
    line["path"] = path
    line["bytes"] = size
    line["user_agent"] = user_agent
    return line


def access_dict(values: dict[str, Any]) -> dict[str, Any]:
    """The line of ``values`` as a dict (a copy: the line is already its own JSON object)."""
    return dict(values)


_dumps = json.JSONEncoder(ensure_ascii=False, default=str).encode


def _stdlib_batch(pending: list[Any]) -> str:
    """A batch's text through the standard library's encoder (the fallback)."""
    ecs = ecs_format()
    return "\n".join(
        item if type(item) is str else _dumps(to_ecs(item) if ecs else item) for item in pending
    )  # fmt: skip


try:  # the [fast] extra: orjson encodes a line in C for about a tenth of the stdlib encoder's cost
    import orjson as _orjson
except ImportError:  # pragma: no cover - the tests run with the [dev] extras, which include it
    _orjson = None  # type: ignore[assignment]


def _batch_text(pending: list[Any]) -> str:
    """The text of a batch: lines already made as they are, line objects encoded, one line each.

    With orjson (extra ``[fast]``): one C call a line, about 2,500 instructions (callgrind), against about 55,000
    through ``json``. A value orjson refuses (a lone surrogate, an object of the project's) sends the batch through
    the standard library's encoder, which writes anything (``default=str``).
    """
    if _orjson is None or ecs_format():
        return _stdlib_batch(pending)
    dumps = _orjson.dumps
    try:
        return b"\n".join([item.encode() if type(item) is str else dumps(item) for item in pending]).decode()
    except (TypeError, ValueError, UnicodeError):
        return _stdlib_batch(pending)


def access_text(values: dict[str, Any]) -> str:
    """The JSON text of one access line (:func:`access_values`)."""
    return _batch_text([values])


# -- the middleware's one call -----------------------------------------------------------------------------------
class AccessLog:
    """The access logger as the middleware sees it: one :meth:`write` per request.

    ``include_query`` is ``ACCESS_LOG_INCLUDE_QUERY``: the path with its query string.
    """

    def __init__(self, logger: logging.Logger, *, include_query: bool = False) -> None:
        self.logger = logger
        self.include_query = include_query

    def write(
        self,
        level: int,
        ctx: Any,
        request: Any,
        response: Any,
        route: str,
        status: int,
        duration: float,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write the access line of one request; ``extra`` holds fields beyond the line's own (debug logging, a
        rejected correlation id's length), which only the record path carries."""
        values = access_values(
            time.time(),
            level,
            ctx,
            route,
            request.method,
            request.get_full_path() if self.include_query else request.path,
            status,
            int(duration * 1_000_000) / 1000,  # milliseconds to the microsecond (round() costs ten times more)
            _body_size(response),
            ctx.user_agent or None,
        )
        logger = self.logger
        if extra is None:
            writer = direct_writer(logger, level)
            if writer is not None:
                writer.write_values(values, level)
                return
        attributes = {name: values[name] for name in ACCESS_FIELDS}
        if extra:
            attributes.update(extra)
        attributes["obs_context"] = ctx
        message = values["message"]
        logger.handle(logger.makeRecord(ACCESS_LOGGER, level, __file__, 0, message, (), None, None, attributes))


def _body_size(response: Any) -> int | None:
    """Bytes of a non-streaming body; None for streaming responses (their size is unknown until sent).

    ``response.content`` joins the body's chunks; a body of one chunk (what ``HttpResponse(content)`` holds) is
    handed back as it is by ``bytes.join``, so measuring it copies nothing. An empty body with a numeric
    ``Content-Length`` (a view answering HEAD) says what that header says.
    """
    if response.streaming:
        return None
    size = len(response.content)
    if size == 0:
        length = response.get("Content-Length")
        if length is not None and length.isdigit():
            return int(length)
    return size


# -- batching handlers -------------------------------------------------------------------------------------------
class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` that writes its lines in batches (see the module docstring).

    Any record can go through it (``emit`` formats it at once and it waits with the batch, in order); the
    middleware's lines arrive as values (:meth:`write_values`) and are made into text with their batch.
    """

    #: The name the dropped-lines metric gives this handler's lines.
    target_name = "stream"

    def _init_batching(self, buffer_lines: int, flush_seconds: float) -> None:
        if int(buffer_lines) < 1:
            raise ValueError(f"buffer_lines={buffer_lines!r}: give 1 (write every line at once) or more")
        if not float(flush_seconds) > 0:
            raise ValueError(f"flush_seconds={flush_seconds!r}: give a positive number of seconds, such as 1.0")
        self.buffer_lines = int(buffer_lines)
        self.flush_seconds = float(flush_seconds)
        # Lines of other loggers (str) and the middleware's line objects (dict), in order.
        self._pending: list[str | dict[str, Any]] = []
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self.dropped = 0
        self._warned = False
        _handlers.add(self)
        _install_sigterm_flush()

    # -- writing -----------------------------------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_values(line, record.levelno)

    def write_values(self, values: dict[str, Any] | str, level: int) -> None:
        """A line's values (:func:`access_values`) or a line already made, written with the batch.

        Made in one loop per batch, the lines cost less than one by one between requests (the loop's code and data
        stay in the processor's caches).
        """
        with self.lock:  # type: ignore[union-attr]
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
        try:
            text = _batch_text(pending)
        except Exception:  # nothing encodes it: keep what can be written, one line at a time
            lines = []
            for item in pending:
                try:
                    lines.append(_batch_text([item]))
                except Exception:
                    self.handleError(logging.makeLogRecord({"name": ACCESS_LOGGER, "msg": "access line", "levelno": 0}))
            text = "\n".join(lines)
        count = len(pending)
        stream = self._target()
        if stream is None:
            self._drop(count, None)
            return
        try:
            stream.write(text + "\n")
            stream.flush()
        except OSError as exc:  # ENOSPC, EPIPE, EIO, EACCES
            self._drop(count, exc)
        except ValueError:  # a stream closed under the handler (a test runner's capture at exit): counted only
            self._drop(count, None, warn=False)

    def _target(self) -> Any:
        """The stream to write to, None when there is none to be had."""
        return self.stream

    def _drop(self, count: int, exc: BaseException | None, *, warn: bool = True) -> None:
        """Lines the target would not take: counted, and one warning per handler on stderr (never an exception)."""
        self.dropped += count
        with contextlib.suppress(Exception):  # a receiver's fault must not fail logging either
            lines_dropped.send(sender=type(self), handler=self.target_name, count=count)
        if warn and not self._warned:
            self._warned = True
            reason = f"{type(exc).__name__}: {exc}" if exc is not None else "the target cannot be opened"
            _warn(f"{self.target_name} log target {self._describe()} does not take lines ({reason}); they are dropped"
                  " and counted in observability_log_lines_dropped_total, without further warnings")  # fmt: skip

    def _describe(self) -> str:
        return repr(getattr(self.stream, "name", self.target_name))

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
            stream = self.stream
            if stream is not None and hasattr(stream, "flush"):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()

    def close(self) -> None:
        self._stop.set()
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
        with contextlib.suppress(OSError):  # what the stream's own buffer could not write: already counted
            super().close()

    # -- the timer that writes an idle batch -------------------------------------------------------------------
    def _start_flusher(self) -> None:
        self._flusher = threading.Thread(
            target=_flush_periodically,
            args=(weakref.ref(self), self._stop, self.flush_seconds),
            name="observability-log-flusher",
            daemon=True,
        )
        self._flusher.start()

    def _after_fork(self) -> None:
        """In a forked child (a gunicorn worker): nothing pending (the parent wrote its batch), no flusher yet."""
        self._pending = []
        self._flusher = None
        self._stop = threading.Event()


class BatchingStreamHandler(BatchingHandler):
    """Batched JSON lines on a stream: stdout by default, what ``logging_config()`` installs (a container's log).

    In a ``LOGGING`` dict of your own: ``{"class": "observability_app.access_log.BatchingStreamHandler", "stream":
    "ext://sys.stdout", "buffer_lines": 256, "flush_seconds": 1.0}``.
    """

    def __init__(self, stream: Any = None, *, buffer_lines: int = 256, flush_seconds: float = 1.0) -> None:
        super().__init__(stream)
        if self.stream is sys.stdout or self.stream is sys.stderr:
            self.target_name = "stdout" if self.stream is sys.stdout else "stderr"
        self._init_batching(buffer_lines, flush_seconds)


class AccessLogHandler(BatchingHandler, logging.FileHandler):
    """A ``FileHandler`` that writes in batches (see the module docstring).

    ``logging_config(access_log=path, access_log_buffer=256, access_log_flush_seconds=1.0)`` installs it; in a
    ``LOGGING`` dict of your own: ``{"class": "observability_app.access_log.AccessLogHandler", "filename": ...,
    "buffer_lines": 256, "flush_seconds": 1.0}``. A file that cannot be opened does not stop start-up: its lines
    are dropped and counted, and each batch tries to open it again.
    """

    target_name = "file"

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
        logging.FileHandler.__init__(self, filename, mode, encoding, delay=True, errors=errors)
        self._init_batching(buffer_lines, flush_seconds)
        if not delay:
            self._target()

    def _target(self) -> Any:
        if self.stream is None:
            if self.mode == "w" and getattr(self, "_closed", False):
                return None
            try:
                self.stream = self._open()
            except OSError as exc:
                if not self._warned:
                    self._drop(0, exc)
                return None
        return self.stream

    def _describe(self) -> str:
        return repr(self.baseFilename)


def _warn(message: str) -> None:
    """One line on stderr, past logging (whose own handler may be the one that fails)."""
    try:
        sys.stderr.write(f"observability_app: {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


def _flush_periodically(ref: weakref.ref, stop: threading.Event, seconds: float) -> None:  # type: ignore[type-arg]
    while not stop.wait(seconds):
        handler = ref()
        if handler is None:
            return
        handler.flush()
        del handler


_handlers: weakref.WeakSet[BatchingHandler] = weakref.WeakSet()


def flush_all() -> None:
    """Write every batching handler's pending lines now."""
    for handler in list(_handlers):
        with contextlib.suppress(Exception):
            handler.flush()


def _after_fork_in_child() -> None:
    for handler in list(_handlers):
        handler._after_fork()


os.register_at_fork(before=flush_all, after_in_child=_after_fork_in_child)

_sigterm = {"installed": False}


def _install_sigterm_flush() -> None:
    """On SIGTERM write what is pending, then do what SIGTERM did before (by default: end the process).

    Installed once, from the main thread, and only over the default action: a server that handles SIGTERM itself
    (gunicorn's workers do, and exit through logging's shutdown, which writes the batches) keeps its handler.
    """
    if _sigterm["installed"] or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return
    _sigterm["installed"] = True


def _on_sigterm(signum: int, frame: Any) -> None:
    flush_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def direct_writer(logger: logging.Logger, level: int) -> BatchingHandler | None:
    """The handler the middleware may give the line's values to directly, or None for the record path.

    Only when nothing else would see the record: the logger's one handler is a batching handler of this module that
    buffers, with this app's own formatter (a subclass may add fields: it gets records), no filters but
    :class:`ContextFilter`, and the logger neither propagates nor filters. Checked on every line (a dozen attribute
    reads), so that a reconfigured logging takes effect at once.
    """
    handlers = logger.handlers
    if len(handlers) != 1 or logger.propagate or logger.filters or logger.disabled:
        return None
    handler = handlers[0]
    if (
        type(handler) not in _DIRECT
        or handler.buffer_lines == 1  # type: ignore[attr-defined]
        or level < handler.level
        or type(handler.formatter) is not JsonFormatter
    ):
        return None
    for each in handler.filters:
        if type(each) is not ContextFilter:
            return None
    return handler  # type: ignore[return-value]


_DIRECT = frozenset({AccessLogHandler, BatchingStreamHandler})
