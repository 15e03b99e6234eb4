"""One small abstract check and the result it produces.

A dependency check is a subclass with a ``name`` and a ``check()`` that returns when the dependency works and raises
when it does not. The runner (:mod:`observability_app.health.runner`) times it, bounds it with
``HEALTH_CHECK_TIMEOUT`` and turns the outcome into a :class:`CheckResult`. The public answer never carries the
exception's text (it may hold a host name, a user or a password from a DSN): only the exception's class name, or
the message of a :class:`HealthCheckFailed`, which a check raises with wording it knows to be safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["FAIL", "PASS", "CheckResult", "HealthCheck", "HealthCheckFailed"]


PASS = "pass"
FAIL = "fail"


class HealthCheckFailed(Exception):
    """Raised by a check with a message safe to show to anyone (no host names, users or secrets)."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: str
    duration_ms: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == PASS

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"status": self.status, "duration_ms": round(self.duration_ms, 3)}
        if self.error:
            data["error"] = self.error
        return data


class HealthCheck:
    """Base class: set ``name``, implement ``check()``.

    ``timeout`` (seconds) overrides ``HEALTH_CHECK_TIMEOUT`` for this check. ``instances()`` may return several
    configured copies (one per database alias, for instance); by default the class gives one instance of itself.
    """

    name: ClassVar[str] = ""
    timeout: ClassVar[float | None] = None

    @classmethod
    def instances(cls) -> Iterable[HealthCheck]:
        return [cls()]

    def check(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Runs in the check's thread after every run (close what ``check()`` opened)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
