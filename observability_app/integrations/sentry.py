"""Error tracking with Sentry: unhandled errors carry the request's ids and leave with the app's redaction applied.

Install the extra and give a DSN::

    pip install "observability_app[sentry]"
    OBSERVABILITY = {"SENTRY_DSN": "https://<key>@o0.ingest.sentry.io/<project>"}   # or OBSERVABILITY_SENTRY_DSN

With a DSN set, ``ObservabilityConfig.ready()`` calls :func:`setup`, which starts ``sentry-sdk`` with its Django
integration, ``environment`` = ``OBSERVABILITY["ENVIRONMENT"]`` and ``release`` = ``SERVICE_VERSION``, and
:func:`before_send`. A project that calls ``sentry_sdk.init()`` itself (to pass options of its own) leaves
``SENTRY_DSN`` unset and calls :func:`setup` after its ``init()``: :func:`before_send` is put on that client after
the project's own ``before_send``; nothing is started twice.

:func:`before_send`, run on every event after the SDK's event processors, just before it is sent:

* tags ``correlation_id``, ``request_id``, ``trace_id`` (the OpenTelemetry trace, when tracing), ``span_id``,
  ``service``, ``source`` and ``route`` from the request or job context of the code that failed, so that an issue in
  Sentry leads to its log lines (search the correlation id) and its audit events;
* ``environment`` and ``release`` when the event has none;
* :mod:`observability_app.redaction` over the whole event: values under secret-looking keys (passwords, tokens,
  cookies, authorization, ``REDACT_FIELDS``) become ``[REDACTED]`` at any depth (request headers, cookies, form
  data, stack-frame locals, breadcrumbs, extra), and ``password=...``-style pairs are masked inside every string
  (exception messages, log messages in breadcrumbs, query strings). ``send_default_pii`` stays off.

The access logger is ignored by Sentry's logging integration: a 5xx access line is not a second event for the
error that Sentry has already captured.
"""

from __future__ import annotations

from typing import Any

from .. import context
from ..conf import settings
from ..redaction import REDACTED, is_secret_key, scrub_text

try:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import ignore_logger
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "observability_app.integrations.sentry needs sentry-sdk: pip install 'observability_app[sentry]'"
    ) from exc

#: Event keys walked by the redaction (the rest of an event is the SDK's own metadata).
_MAX_DEPTH = 24


def setup() -> None:
    """Start Sentry with ``SENTRY_DSN`` (when set and no client is active yet) and put :func:`before_send` on the
    active client.

    ``before_send`` runs after every event processor (the Django integration adds the request's headers, cookies
    and form data in one), so what it redacts is what leaves. A ``before_send`` the project gave its own
    ``init()`` still runs, first. Idempotent: a second call adds nothing twice.
    """
    dsn = settings.SENTRY_DSN
    if dsn and not sentry_sdk.get_client().is_active():
        sentry_sdk.init(
            dsn=dsn,
            environment=str(settings.ENVIRONMENT),
            release=str(settings.SERVICE_VERSION),
            sample_rate=float(settings.SENTRY_SAMPLE_RATE),
            send_default_pii=False,
            integrations=[DjangoIntegration()],
            server_name=settings.node,
            before_send=before_send,
        )
    from ..logging import ACCESS_LOGGER

    ignore_logger(ACCESS_LOGGER)
    client = sentry_sdk.get_client()
    if client.is_active():
        theirs = client.options.get("before_send")
        if theirs is not before_send and not getattr(theirs, "_observability", False):
            client.options["before_send"] = _after(theirs) if theirs else before_send


def _after(theirs: Any) -> Any:
    """The project's ``before_send``, then ours (theirs may drop the event: None goes out as None)."""

    def chained(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        event = theirs(event, hint)
        return None if event is None else before_send(event, hint)

    chained._observability = True  # type: ignore[attr-defined]
    return chained


def context_tags(ctx: context.ObservabilityContext | None = None) -> dict[str, str]:
    """The tags of the current request or job: its ids, the trace, service, source and route (empty ones left out)."""
    ctx = ctx if ctx is not None else context.current()
    tags = {"service": str(settings.SERVICE_NAME)}
    if ctx is None:
        return tags
    trace_id, span_id = ctx.trace_id, ctx.span_id
    if not trace_id:
        from ..tracing import active, current_trace_ids

        if active():
            trace_id, span_id = current_trace_ids()
    for name, value in (
        ("correlation_id", ctx.correlation_id),
        ("request_id", ctx.request_id),
        ("trace_id", trace_id),
        ("span_id", span_id),
        ("source", ctx.source),
        ("route", ctx.route),
    ):
        if value:
            tags[name] = str(value)[:200]  # Sentry's limit for a tag value
    return tags


def before_send(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add the context's tags, environment and release, then redact the whole event (see the module docstring)."""
    tags = event.get("tags")
    if not isinstance(tags, dict):
        tags = {}
    event["tags"] = {**context_tags(), **tags}
    event.setdefault("environment", str(settings.ENVIRONMENT))
    event.setdefault("release", str(settings.SERVICE_VERSION))
    return redact_event(event)


def redact_event(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with secret-keyed values replaced and secrets inside strings masked, at any depth.

    Sentry sends headers and cookies as dicts or as lists of ``[name, value]`` pairs: both are covered.
    """
    if _depth > _MAX_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return {
            key: (REDACTED if is_secret_key(key) else redact_event(item, _depth + 1)) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        if len(value) == 2 and isinstance(value[0], str) and is_secret_key(value[0]):
            return [value[0], REDACTED]  # a [name, value] header pair
        return [redact_event(item, _depth + 1) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


__all__ = ["before_send", "context_tags", "redact_event", "setup"]
