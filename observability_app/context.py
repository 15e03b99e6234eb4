"""The request or job context: one ContextVar and the helpers that read and set it.

The middleware (for requests) and :mod:`observability_app.jobs` (for background work) bind a context; log
records, metrics and audit events read it. A ContextVar follows the code into ``sync_to_async``/``async_to_sync``
hops and asyncio tasks, and is reset when the request ends, so nothing leaks from one request into the next.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from typing import Any

from django.utils.functional import LazyObject, empty

__all__ = ["SOURCES", "ObservabilityContext", "bind", "bound", "current", "unbind"]

SOURCES = ("api", "job", "worker", "admin", "command", "frontend")


@dataclasses.dataclass(slots=True)
class ObservabilityContext:
    """What is known about the current unit of work.

    ``user`` may be a lazy object (``request.user``); :func:`actor` resolves it only when someone asks, so that
    binding a context costs nothing when no event is recorded.
    """

    request_id: str = ""
    correlation_id: str = ""
    source: str = "command"
    route: str = ""
    method: str = ""
    ip: str = ""
    user_agent: str = ""
    user: Any = None
    org_id: str = ""
    project_id: str = ""
    trace_id: str = ""
    span_id: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def actor(self) -> str:
        """The acting user's name, '' when anonymous or unknown."""
        user = self.user
        if user is None:
            return ""
        if isinstance(user, str):
            return user
        try:
            if not user.is_authenticated:
                return ""
            return str(user.get_username())
        except Exception:  # a broken auth backend must not break logging or auditing
            return ""

    def user_id(self) -> str:
        """The user's primary key, '' when anonymous, unknown or never looked at.

        Unlike :meth:`actor` this never forces a lazy ``request.user``: a log line must not load the session
        (a database query) for a request whose code never asked who the user was.
        """
        user = self.user
        if user is None or _unevaluated(user) or type(user) is str:  # isinstance() would evaluate a lazy user
            return ""
        try:
            return str(user.pk) if user.is_authenticated and user.pk is not None else ""
        except Exception:
            return ""


def _unevaluated(user: Any) -> bool:
    """True for a ``SimpleLazyObject`` nobody has looked into yet (``type()`` and ``object.__getattribute__`` do
    not go through the proxy, so asking does not evaluate it)."""
    return issubclass(type(user), LazyObject) and object.__getattribute__(user, "_wrapped") is empty


_current: ContextVar[ObservabilityContext | None] = ContextVar("observability_context", default=None)


#: ``current()``: the bound context, or None outside any request or job.
#: ``bind(ctx)``: bind ``ctx``; returns the token that ``unbind(token)`` takes to restore what was bound before.
#: They are the ContextVar's own methods (no Python frame of ours): every request and every log line calls them.
current: Callable[[], ObservabilityContext | None] = _current.get
bind: Callable[[ObservabilityContext], Token] = _current.set
unbind: Callable[[Token], None] = _current.reset


@contextlib.contextmanager
def bound(ctx: ObservabilityContext | None = None, **fields: Any) -> Iterator[ObservabilityContext]:
    """Run a block under a context: ``with bound(source="job", correlation_id=cid): ...``."""
    ctx = ctx or ObservabilityContext(**fields)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
