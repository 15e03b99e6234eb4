"""Run the configured checks with a time bound, share the answer between concurrent probes.

Why threads: a check blocked on a dead TCP peer (a blackholed database host) cannot be interrupted from Python, but
the probe must still answer within ``HEALTH_CHECK_TIMEOUT``. Each check runs in its own daemon thread; the caller
waits at most the timeout and reports a check still running as failed (``timeout``). A check whose previous run is
still hung is not started again: it stays failed until that run ends, so a flood of probes against a hung
dependency costs no thread per probe, and a run already past its bound is reported failed at once (it had its time):
a probe or a scrape never waits twice on the same hung run.

Why a cache: kubelets, load balancers and uptime monitors probe several times a second per replica. The last answer
is reused for ``HEALTH_CACHE_SECONDS`` and concurrent probes wait for the one evaluation in flight instead of each
running the checks.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.utils.module_loading import import_string

from ..conf import on_reload, settings
from .base import FAIL, PASS, CheckResult, HealthCheck, HealthCheckFailed


@dataclass(frozen=True)
class HealthReport:
    status: str
    timestamp: datetime
    checks: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.status == PASS

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "timestamp": self.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "checks": {result.name: result.as_dict() for result in self.checks},
        }


class _Slot:
    """One check's run state: at most one thread per check at any time."""

    __slots__ = ("began", "done", "result", "running")

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.running = False
        self.done = threading.Event()
        self.result: CheckResult | None = None


def load_checks(paths: Sequence[str] | None = None) -> list[HealthCheck]:
    """Instances of the classes named in ``HEALTH_CHECKS`` (dotted paths); raises ImportError/TypeError when wrong."""
    checks: list[HealthCheck] = []
    for path in settings.HEALTH_CHECKS if paths is None else paths:
        cls = import_string(path)
        if not (isinstance(cls, type) and issubclass(cls, HealthCheck)):
            raise TypeError(f"{path} is not a subclass of observability_app.health.HealthCheck")
        checks.extend(cls.instances())
    return checks


class Runner:
    def __init__(self, checks: Sequence[HealthCheck] | None = None) -> None:
        self._checks = list(checks) if checks is not None else None
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._evaluating = threading.Lock()
        self._cached: HealthReport | None = None
        self._cached_at = 0.0

    @property
    def checks(self) -> list[HealthCheck]:
        if self._checks is None:
            self._checks = load_checks()
        return self._checks

    def report(self, *, max_age: float | None = None) -> HealthReport:
        """The readiness report, at most ``max_age`` seconds old (default ``HEALTH_CACHE_SECONDS``)."""
        max_age = settings.HEALTH_CACHE_SECONDS if max_age is None else max_age
        cached = self._cached
        if cached is not None and time.monotonic() - self._cached_at <= max_age:
            return cached
        timeout = float(settings.HEALTH_CHECK_TIMEOUT)
        # One evaluation at a time; the others wait for it (bounded) and take its answer.
        if not self._evaluating.acquire(timeout=timeout + 0.25):
            return self._timeout_report()
        try:
            cached = self._cached
            if cached is not None and time.monotonic() - self._cached_at <= max_age:
                return cached
            report = self.evaluate(timeout)
            self._cached, self._cached_at = report, time.monotonic()
            return report
        finally:
            self._evaluating.release()

    def evaluate(self, timeout: float) -> HealthReport:
        try:
            checks = self.checks
        except (ImportError, TypeError, ValueError):
            # Misconfiguration is reported by the system check observability_app.E030; the probe says not ready.
            return HealthReport(FAIL, datetime.now(UTC), (CheckResult("configuration", FAIL, 0.0, "invalid"),))
        waits = [(check, self._start(check)) for check in checks]
        results = []
        for check, slot in waits:
            bound = check.timeout if check.timeout is not None else timeout
            began = slot.began  # a run still hung from an earlier probe keeps its own start: one bound per run
            remaining = max(0.0, bound - (time.monotonic() - began))
            if slot.done.wait(remaining) and slot.result is not None:
                results.append(slot.result)
            else:
                elapsed = (time.monotonic() - began) * 1000.0
                results.append(CheckResult(check.name, FAIL, elapsed, "timeout"))
        status = PASS if all(result.ok for result in results) else FAIL
        return HealthReport(status, datetime.now(UTC), tuple(results))

    def _start(self, check: HealthCheck) -> _Slot:
        with self._lock:
            slot = self._slots.get(check.name)
            if slot is not None and slot.running:
                return slot  # still hung from an earlier probe: wait on that run, within its own bound
            slot = self._slots[check.name] = _Slot()
            slot.running = True
        thread = threading.Thread(target=self._run, args=(check, slot), name=f"health-{check.name}", daemon=True)
        thread.start()
        return slot

    @staticmethod
    def _run(check: HealthCheck, slot: _Slot) -> None:
        started = time.perf_counter()
        try:
            check.check()
            result = CheckResult(check.name, PASS, (time.perf_counter() - started) * 1000.0)
        except HealthCheckFailed as exc:
            result = CheckResult(check.name, FAIL, (time.perf_counter() - started) * 1000.0, str(exc)[:200])
        except BaseException as exc:  # never the message: it may hold a DSN, a host or a password
            result = CheckResult(check.name, FAIL, (time.perf_counter() - started) * 1000.0, type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):  # a failing cleanup must not hide the result
                check.cleanup()
        slot.result = result
        slot.running = False
        slot.done.set()

    def _timeout_report(self) -> HealthReport:
        return HealthReport(FAIL, datetime.now(UTC), (CheckResult("health", FAIL, 0.0, "timeout"),))

    def forget(self) -> None:
        """Drop the cached answer and the loaded checks (after a settings change)."""
        self._checks = None
        self._cached = None


_runner = Runner()
on_reload(_runner.forget)


def readiness(max_age: float | None = None) -> HealthReport:
    """The readiness report of the configured checks (cached for ``HEALTH_CACHE_SECONDS``)."""
    return _runner.report(max_age=max_age)


def liveness() -> HealthReport:
    """The process is up and serving: nothing external is consulted."""
    return HealthReport(PASS, datetime.now(UTC), ())
